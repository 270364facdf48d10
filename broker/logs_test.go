package broker

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

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

// TestRefusalsBounded: a flood of refusals is counted in full but logged
// 20 lines a reason per 10 s, then one line says how many were left out.
func TestRefusalsBounded(t *testing.T) {
	var buf bytes.Buffer
	r := newRefusals(slog.New(slog.NewTextHandler(&buf, nil)))
	now := time.Unix(1000, 0)
	r.lines.Now = func() time.Time { return now }
	for range 1000 {
		r.refuse(refPublish, "may not publish on this topic", "user", "edge2")
	}
	r.refuse(refTopic, "topic too long", "user", "edge2") // another reason has its own lines
	now = now.Add(11 * time.Second)
	r.refuse(refPublish, "may not publish on this topic", "user", "edge2")
	out := buf.String()
	if n := strings.Count(out, "reason=acl_publish user=edge2"); n != 21 {
		t.Errorf("%d refusal lines for acl_publish, want 20 then 1 in the next window:\n%s", n, out)
	}
	if !strings.Contains(out, "refused 980 more (acl_publish)") || !strings.Contains(out, "reason=topic_size") {
		t.Errorf("want a line for the 980 left out and the other reason's line:\n%s", out)
	}
	if c := r.counts(); c[refPublish] != 1001 || c[refTopic] != 1 {
		t.Errorf("counts %v, want 1001 acl_publish and 1 topic_size", c)
	}
}
