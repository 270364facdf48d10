package keepermqtt

import (
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// fullDiskHook refuses publishes of one topic as the hub out of disk
// refuses them to an MQTT 3.1.1 client, which has no reason codes: it
// drops the connection (broker/store_refuse.go).
type fullDiskHook struct {
	mochi.HookBase
	topic   string
	refused atomic.Int64
}

func (h *fullDiskHook) ID() string { return "full-disk" }

func (h *fullDiskHook) Provides(b byte) bool { return b == mochi.OnPublish }

func (h *fullDiskHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.TopicName != h.topic || cl.Net.Inline {
		return pk, nil
	}
	h.refused.Add(1)
	cl.Stop(packets.ErrQuotaExceeded)
	return pk, packets.ErrRejectPacket
}

// TestSyncRefused: Sync, which the keeper calls after a cut's chunks and
// manifest and before it deletes the generation before, returns nil once
// the broker acknowledged what was published, and fails when the broker
// refuses a publish (the hub out of disk drops the connection; paho sends
// the publish again at each reconnection, refused again).
func TestSyncRefused(t *testing.T) {
	defer func(d time.Duration) { syncWithin = d }(syncWithin)
	syncWithin = 2 * time.Second
	srv, addr, _ := startBroker(t, "127.0.0.1:0")
	hook := &fullDiskHook{topic: "vallum/list/bl/1/0"}
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	k, _ := runAdapter(t, addr)
	eventually(t, "the keeper did not settle", func() bool { _, n, _, _ := k.snapshot(); return n > 0 })
	a := k.sink.(*Adapter)
	_ = a.Sync() // the mark the keeper takes before a cut's publishes
	if err := a.Retain("vallum/list/bl/0/0", []byte("chunk")); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err != nil {
		t.Fatalf("Sync after a publish the broker took: %v", err)
	}
	_ = a.Sync()
	if err := a.Retain(hook.topic, []byte("chunk")); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err == nil {
		t.Fatal("Sync after a publish the broker refused: nil, want an error (the keeper would delete the generation before)")
	}
	if hook.refused.Load() == 0 {
		t.Error("the broker refused nothing: the test tests nothing")
	}
}
