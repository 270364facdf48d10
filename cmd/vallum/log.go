package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// newLogger builds the one logger of the process; the libraries' loggers
// are bridged into it (paho's are package globals).
func newLogger(c config, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.LogLevel)
	}
	o := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch strings.ToLower(c.LogFormat) {
	case "text", "":
		h = slog.NewTextHandler(w, o)
	case "json":
		h = slog.NewJSONHandler(w, o)
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", c.LogFormat)
	}
	// paho logs every connection loss as ERROR and routine store events as
	// WARN; vallum logs disconnects itself, so those are debug here.
	paho := slog.New(h).With("component", "paho")
	mqtt.CRITICAL = slog.NewLogLogger(paho.Handler(), slog.LevelError)
	mqtt.ERROR = slog.NewLogLogger(paho.Handler(), slog.LevelDebug)
	mqtt.WARN = slog.NewLogLogger(paho.Handler(), slog.LevelDebug)
	return slog.New(h), nil
}
