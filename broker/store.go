package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// addStore persists retained messages, sessions, subscriptions and queued
// QoS messages in DataDir/broker, through our own hook and log file
// (store_hook.go, store_kv.go). Not mochi's bolt or redis hooks: they lose
// packet ids across a restart and the session then reconnects in a loop.
// Not pebble: 10 MB of binary, and it does not build for mips.
func (b *Broker) addStore() error {
	if b.opts.DataDir == "" {
		return nil
	}
	dir := filepath.Join(b.opts.DataDir, "broker")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create broker data dir: %w", err)
	}
	log := b.opts.Logger.With("component", "store")
	h := &store{}
	if err := b.srv.AddHook(h, &storeConfig{Path: filepath.Join(dir, storeFile), Logger: log}); err != nil {
		return fmt.Errorf("open broker store in %s: %w", dir, err)
	}
	return nil
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
