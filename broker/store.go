package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"time"
	"unsafe"

	pebbledb "github.com/cockroachdb/pebble"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/packets"
)

// addStore persists retained messages, sessions, subscriptions and queued
// QoS messages in DataDir. Pebble, because mochi's bolt and redis hooks
// lose packet ids across a restart and the session then reconnects in a
// loop. NoSync: a crash of the process loses nothing pebble has accepted,
// a power cut may lose the last moments.
func (b *Broker) addStore() error {
	if b.opts.DataDir == "" {
		return nil
	}
	dir := filepath.Join(b.opts.DataDir, "broker")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create broker data dir: %w", err)
	}
	h := &store{Hook: new(pebble.Hook)}
	cfg := &pebble.Options{
		Path:    dir,
		Mode:    pebble.NoSync,
		Options: &pebbledb.Options{Logger: pebbleLogger{b.opts.Logger.With("component", "pebble")}},
	}
	if err := b.srv.AddHook(h, cfg); err != nil {
		return fmt.Errorf("open broker store in %s: %w", dir, err)
	}
	return nil
}

// store is mochi's pebble hook without the inline client's subscriptions:
// mochi would save them and, after a restart, restore them as a network
// client's, queueing every message for a client that never reads.
type store struct{ *pebble.Hook }

func (s *store) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if !cl.Net.Inline {
		s.Hook.OnSubscribed(cl, pk, codes)
	}
}

func (s *store) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if !cl.Net.Inline {
		s.Hook.OnUnsubscribed(cl, pk)
	}
}

// pebbleLogger sends pebble's chatter to the debug log.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
	os.Exit(1) // pebble's contract: Fatalf does not return
}

// stopRetainedSweep stops mochi's once-a-second sweep of retained
// messages. It copies the whole retained map (800 bytes a message) to look
// for expired ones: about 800 MB a second for a million bans. Retained
// messages here only expire through the keeper (MaximumMessageExpiryInterval
// is 0), so the sweep has nothing to do. mochi v2.7.9 offers no option for
// it; the pinned version's field layout is checked by a test.
func stopRetainedSweep(srv *mqtt.Server) error {
	lp := reflect.ValueOf(srv).Elem().FieldByName("loop")
	if !lp.IsValid() || lp.Kind() != reflect.Pointer || lp.IsNil() {
		return errors.New("mochi server layout changed: no loop field")
	}
	f := lp.Elem().FieldByName("retainedExpiry")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*time.Ticker)(nil)) {
		return errors.New("mochi server layout changed: no retainedExpiry ticker")
	}
	t := *(**time.Ticker)(unsafe.Pointer(f.UnsafeAddr()))
	t.Stop()
	return nil
}
