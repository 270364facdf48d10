package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/retained"
	"github.com/vallum/vallum/internal/wire"
)

// portInUse adds what to do when the embedded broker's port is taken:
// most often another broker (mosquitto, or a vallum already running)
// listens there, which the daemon can use instead with -h.
func portInUse(err error, daemon bool) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	if daemon {
		return fmt.Errorf("%w: another broker (mosquitto, or a vallum already running) may listen there; "+
			"to use it instead of the embedded broker, give -h 127.0.0.1 (and -p PORT); or give the embedded one --listen with a free port", err)
	}
	return fmt.Errorf("%w: another broker (mosquitto, or a vallum already running) may listen there; stop it, or give --listen a free port", err)
}

// tlsHint explains a failed plain connection to a port that speaks TLS:
// the MQTT client sees only EOF (the server drops what is not a TLS
// handshake), so it probes the port with a TLS handshake of its own.
func tlsHint(err error, url string) error {
	hostport, plain := strings.CutPrefix(url, "tcp://")
	if !plain || !speaksTLS(hostport) {
		return err
	}
	return fmt.Errorf("%w: the broker at %s speaks TLS: connect with -T (or -c CAFILE, or --broker ssl://%s)", err, hostport, hostport)
}

// speaksTLS reports whether hostport answers a TLS handshake. It verifies
// nothing: it only tells TLS from plain MQTT, and sends no credentials.
func speaksTLS(hostport string) bool {
	d := &net.Dialer{Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", hostport, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a probe, no data
	if err == nil {
		c.Close()
		return true
	}
	// A server that wants a client certificate refuses with a TLS alert.
	return strings.Contains(err.Error(), "remote error: tls:")
}

// banned reports whether the broker holds a ban state on topic: a retained
// message comes right after the SUBACK when it does. The end of what the
// broker sends is the client's own sync marker coming back, as for
// `vallum list`; a login that may not use it (a reporter) falls back to a
// pause of half a second. known is false when the user may not read the
// state, or the answer did not come, so nothing can be said.
func banned(cl mqtt.Client, topic string) (held, known bool) {
	got := make(chan bool, 2)
	send := func(v bool) {
		select {
		case got <- v:
		default:
		}
	}
	opts := cl.OptionsReader()
	marker := wire.MarkerTopic(opts.ClientID())
	withMarker := retained.Granted(cl.Subscribe(marker, 1, func(mqtt.Client, mqtt.Message) { send(false) }))
	if withMarker {
		defer cl.Unsubscribe(marker)
	}
	tok := cl.Subscribe(topic, 0, func(_ mqtt.Client, m mqtt.Message) {
		if len(m.Payload()) > 0 {
			send(true)
		}
	})
	if wait(tok, "subscribe "+topic) != nil {
		return false, false
	}
	defer cl.Unsubscribe(topic)
	if !retained.Granted(tok) {
		return false, false // refused: a reporter limited to other lists
	}
	quiet := 500 * time.Millisecond
	if withMarker {
		quiet = 10 * time.Second
		cl.Publish(marker, 1, false, "unban")
	}
	select {
	case h := <-got:
		return h, true
	case <-time.After(quiet):
		return false, !withMarker
	}
}

// warnIfTLS logs, once, that the broker speaks TLS when the bridge has not
// connected over plain tcp:// within a few seconds: its own log says only
// EOF at every retry. A broker that is down refuses the probe, and one that
// accepted the bridge is never probed.
func warnIfTLS(ctx context.Context, url string, connected *atomic.Bool, log *slog.Logger) {
	hostport, plain := strings.CutPrefix(url, "tcp://")
	if !plain {
		return
	}
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		return
	}
	if !connected.Load() && speaksTLS(hostport) {
		log.Warn("the broker speaks TLS on this port: connect with -T (or -c CAFILE, or --broker ssl://" + hostport + ")")
	}
}
