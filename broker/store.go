package broker

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/store"
	"github.com/vallum/vallum/internal/wire"
)

// addStore persists retained messages, sessions, subscriptions and queued
// QoS messages in the data dir (internal/datadir says where), through our
// own hook (store_hook.go) and engine (internal/store). Not mochi's bolt or
// redis hooks: they lose packet ids across a restart and the session then
// reconnects in a loop. Not pebble: 10 MB of binary, and it does not build
// for mips.
//
// The data dir's broker lock is taken before the store is read or
// written, so a second broker on one data dir fails here and leaves the
// first one's file alone.
func (b *Broker) addStore() error {
	if b.opts.DataDir == "" {
		return nil
	}
	d := datadir.Dir(b.opts.DataDir)
	if err := os.MkdirAll(d.Broker(), 0o700); err != nil {
		return fmt.Errorf("create broker data dir: %w", err)
	}
	lock, err := datadir.Acquire(d.BrokerLock(), "the broker store in "+d.Broker())
	if err != nil {
		return err
	}
	log := b.opts.Logger.With("component", "store")
	note, err := d.MigrateStore()
	if err != nil {
		_ = lock.Close()
		return err
	}
	if note != "" {
		log.Warn("store: " + note)
	}
	c := &storeConfig{Path: d.Store(), Logger: log, Lock: lock}
	for _, root := range b.roots {
		c.Events = append(c.Events, wire.EventTopics(root)...)
	}
	// The last hook with OnPublish: a publish it stores must not be
	// refused by a hook after it.
	h := &storeHook{}
	if err := b.srv.AddHook(h, c); err != nil {
		_ = lock.Close()
		return fmt.Errorf("open broker store in %s: %w", d.Broker(), err)
	}
	b.store = h
	return nil
}

// StoreStats are the store's counters, for metrics.
type StoreStats struct {
	store.Stats
	Refused int64 // publishes refused because the store could not write
	// The burst journal (journal.go): entries held now, entries found
	// unreadable at start, bans taken again from it at start.
	JournalHeld, JournalSkipped, JournalReplayed int64
}

// StoreStats returns the store's counters; false when nothing is stored.
func (b *Broker) StoreStats() (StoreStats, bool) {
	if b.store == nil {
		return StoreStats{}, false
	}
	st := StoreStats{Stats: b.store.kv.Stats(), Refused: b.store.refused.Load()}
	if j := b.store.journal; j != nil {
		held, skipped, replayed := j.stats()
		st.JournalHeld, st.JournalSkipped, st.JournalReplayed = int64(held), int64(skipped), int64(replayed)
	}
	return st, true
}

// StoreHealth is nil while the store works (or there is none): otherwise
// the error of its last write or fsync, and publishes are being refused.
func (b *Broker) StoreHealth() error {
	if b.store == nil {
		return nil
	}
	return b.store.kv.Health()
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
