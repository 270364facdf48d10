package broker

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestBriefHandler: mochi's log lines show a packet as one short summary,
// and its line for an ACL refusal (already logged by the auth hook) is
// dropped.
func TestBriefHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(&briefHandler{slog.NewTextHandler(&buf, nil)})
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "blacklist/add",
		Payload: bytes.Repeat([]byte("192.0.2.1\n"), 300)}
	log.Warn("error processing packet", "error", errors.New("boom"), "client", "c1", "pk", pk)
	log.Warn("error processing packet", "error", packets.ErrNotAuthorized, "client", "c1", "pk", pk)
	log.With("x", 1).Debug("publish packet rejected", "packet", &pk)
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1 (the not-authorized line dropped, debug not shown):\n%s", len(lines), out)
	}
	if len(lines[0]) > 300 || strings.Contains(out, "FixedHeader") || !strings.Contains(out, "Publish topic=blacklist/add qos=1 retain=false bytes=3000") {
		t.Errorf("line of %d bytes, want a short summary of the packet: %s", len(lines[0]), out)
	}
}
