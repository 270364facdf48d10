//go:build vallum_lean

package main

import (
	"log/slog"
	"strings"
	"testing"
)

// TestKillConnectionsWarnedHere: vallum_lean builds leave the feature
// out; the shipped router config turns it on, so they say so and run
// without it rather than refuse to start.
func TestKillConnectionsWarnedHere(t *testing.T) {
	c := config{Topic: []string{"blacklist"}, KillConnections: []string{"blacklist"}, Backend: "ipset",
		ClientID: "x", QoS: 1, MaxPayload: 1024, WidestV4: 8, WidestV6: 32, MaxElem: 1}
	var logs strings.Builder
	o, err := c.bridgeOptions(slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || o.KillLists != nil {
		t.Errorf("bridgeOptions with --kill-connections = %v, lists %v; want no error and no lists", err, o.KillLists)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "not in this build (vallum_lean") {
		t.Errorf("log %q: want a warning that says the feature is not in this build", logs.String())
	}
}
