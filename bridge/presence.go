//go:build !vallum_lean

package bridge

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// Presence is what the bridge says of itself on its retained status
// topic, wire.HostTopic(ClientID), so that the hub (its web view) and
// admins know every host whichever broker carries the lists. The
// connection's will is the same status marked offline.
type Presence struct {
	Off     bool   // publish no status and set no will
	Version string // vallum's version, as -V prints it
	Backend string // ipset, nft, dryrun
	// Every is the longest time between two statuses while connected;
	// default DefaultPresenceEvery. A status also goes out on every
	// connection and after every sync.
	Every time.Duration
}

// PresenceBuilt says whether this build publishes the host's status.
const PresenceBuilt = true

const presenceBuilt = PresenceBuilt

// DefaultPresenceEvery is how often a connected bridge repeats its status.
const DefaultPresenceEvery = time.Minute

// willLag is when a bridge repeats its status after a new connection.
const willLag = 3 * time.Second

// presenceCheck is how often the bridge looks whether a sync ended or the
// connection changed, to publish the status they changed.
const presenceCheck = 500 * time.Millisecond

// entriesEvery is the shortest time between two statuses that differ only
// in their entries: a flood changes them with every batch.
const entriesEvery = 5 * time.Second

// syncStats is when the last sync ended, for the status.
type syncStats struct {
	mu sync.Mutex
	at time.Time
}

// noteSync records that a sync just ended.
func (s *Stats) noteSync() {
	s.sync.mu.Lock()
	s.sync.at = time.Now()
	s.sync.mu.Unlock()
}

// count is how many entries vallum holds in set (its own, not those
// added by hand).
func (w *ownership) count(set string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o := w.sets[set]; o != nil {
		return o.len()
	}
	return 0
}

// status is the bridge's status now.
func (b *Bridge) status(online bool) wire.HostStatus {
	st := wire.HostStatus{Online: online, Version: b.opts.Presence.Version, Backend: b.opts.Presence.Backend,
		Synced: online && b.stats.Subscribed.Load(), At: time.Now().Unix()}
	st.Entries = map[string]int{}
	for _, l := range b.opts.Lists {
		st.Lists = append(st.Lists, l.Root)
		st.Entries[l.Root] = b.app.own.count(l.Set4) + b.app.own.count(l.Set6)
	}
	s := &b.stats.sync
	s.mu.Lock()
	if !s.at.IsZero() {
		st.LastSync = s.at.Unix()
	}
	s.mu.Unlock()
	return st
}

// setWill makes the broker mark this host offline when its connection
// ends without a DISCONNECT. A clean stop publishes the offline status
// itself (goodbye).
func (b *Bridge) setWill(co *mqtt.ClientOptions) {
	if b.opts.Presence.Off {
		return
	}
	co.SetBinaryWill(wire.HostTopic(b.opts.ClientID), wire.EncodeHostStatus(b.status(false)), 1, true)
}

// startPresence runs presence until ctx ends; the function it returns
// waits for that, then says goodbye.
func (b *Bridge) startPresence(ctx context.Context, c mqtt.Client) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.presence(ctx, c)
	}()
	return func() {
		<-done
		b.goodbye(c)
	}
}

// presence publishes the status on each connection, after each sync, and
// every Presence.Every otherwise, until ctx ends.
func (b *Bridge) presence(ctx context.Context, c mqtt.Client) {
	if b.opts.Presence.Off {
		return
	}
	every := cmp.Or(b.opts.Presence.Every, DefaultPresenceEvery)
	t := time.NewTicker(presenceCheck)
	defer t.Stop()
	var last wire.HostStatus
	var sent time.Time
	var conn int64
	var again time.Time // a second status after a new connection
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.IsConnectionOpen() {
			continue
		}
		st, n := b.status(true), b.connects.Load()
		since := time.Since(sent)
		due := !again.IsZero() && time.Now().After(again)
		if !due && n == conn && same(st, last) && (maps.Equal(st.Entries, last.Entries) || since < entriesEvery) && since < every {
			continue
		}
		switch {
		case n != conn:
			// The broker may publish the will of the connection this one
			// replaced after this status (a takeover of a half-open
			// connection): say it again a moment later.
			again = time.Now().Add(willLag)
		case due:
			again = time.Time{}
		}
		// Not waited for: a flood being applied can hold the PUBACK back.
		c.Publish(wire.HostTopic(b.opts.ClientID), 1, true, wire.EncodeHostStatus(st))
		last, sent, conn = st, time.Now(), n
	}
}

// goodbye publishes the offline status before a clean disconnect, which
// sends no will.
func (b *Bridge) goodbye(c mqtt.Client) {
	if b.opts.Presence.Off || !c.IsConnectionOpen() {
		return
	}
	c.Publish(wire.HostTopic(b.opts.ClientID), 1, true, wire.EncodeHostStatus(b.status(false))).WaitTimeout(time.Second)
}

// same reports whether two statuses say the same, whenever made, but for
// their entries.
func same(a, b wire.HostStatus) bool {
	return a.Online == b.Online && a.Synced == b.Synced && a.LastSync == b.LastSync && slices.Equal(a.Lists, b.Lists)
}

// connectNoWill retries a first connection the broker refused, without
// the will: a broker whose ACL predates the status (an older hub, a
// mosquitto ACL without the vallum/hosts/%c pattern) refuses the whole
// CONNECT for it. Then the bridge runs without presence, and says so.
func (b *Bridge) connectNoWill(ctx context.Context, refused error) (mqtt.Client, error) {
	if b.opts.Presence.Off || !errors.Is(refused, ErrRefused) {
		return nil, refused
	}
	b.opts.Presence.Off = true // nothing else runs yet
	c := mqtt.NewClient(b.clientOptions())
	b.client.Store(&c)
	if err := b.connect(ctx, c); err != nil {
		return nil, refused
	}
	b.log.Warn("the broker refused this host's status as its will: running without presence (the hub's web view does not list this host); let hosts write vallum/hosts/CLIENT_ID",
		"topic", wire.HostTopic(b.opts.ClientID), "err", refused)
	return c, nil
}
