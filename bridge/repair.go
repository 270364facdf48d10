package bridge

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// A firewall reload (`nft flush ruleset`, fw4 restart, `ipset destroy` in
// a script) removes vallum's sets and rules behind its back. The bridge
// checks them every Options.WatchEvery, and when a set had to be created
// again it puts the rules back and reconciles the sets to the broker's
// state, so that every ban the broker holds is back without a signal.
// Bans from legacy events, which the broker keeps no state for, are lost
// with the set. A set emptied in place between two checks is found by its
// witness, one entry of vallum's looked up each time (witness.go).
//
// Why a poll and not netlink notifications: ipset sends none, and
// nftables announces every change on NFNLGRP_NFTABLES, including each
// element vallum adds, which a listener would have to read and parse: more
// work at 100,000 adds a second than one header read a second.

// DefaultWatchEvery is how often the sets and rules are checked: a reload
// leaves the door open for at most about this long.
const DefaultWatchEvery = time.Second

// setFlags records, per set, whether its entries can carry comments. The
// watcher and SIGHUP write it while the worker reads it.
type setFlags struct {
	mu sync.Mutex
	m  map[string]bool
}

func (f *setFlags) set(name string, v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]bool{}
	}
	f.m[name] = v
}

func (f *setFlags) get(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[name]
}

// repairs serialises repairs and carries the worker's requests for one.
type repairs struct {
	mu     sync.Mutex
	poke   chan struct{}           // wakes the watcher before its tick
	lost   atomic.Bool             // the worker found a set missing and created it
	failed bool                    // the last check failed: log the next success
	chosen map[string]netip.Prefix // the witness of each set (witness.go)
}

// setLost tells the watcher that the worker created a set again, which
// then holds only the batch in hand: a resync must follow.
func (b *Bridge) setLost() {
	b.repairs.lost.Store(true)
	if b.opts.WatchEvery < 0 { // no watcher to wake
		b.spawn(func() { _ = b.repair(b.stopCtx, false) })
		return
	}
	select {
	case b.repairs.poke <- struct{}{}:
	default:
	}
}

// watch checks the sets and rules until ctx is done.
func (b *Bridge) watch(ctx context.Context) {
	if b.opts.WatchEvery < 0 {
		return
	}
	t := time.NewTicker(b.opts.WatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.repairs.poke:
		}
		_ = b.repair(ctx, false)
	}
}

var errNotConnected = errors.New("not connected: the sets are reconciled when the connection is back")

// repair makes sure the sets and the rules exist. When a set had to be
// created again, or force is set (SIGHUP), it reconciles the sets to the
// broker's state.
func (b *Bridge) repair(ctx context.Context, force bool) error {
	r := &b.repairs
	r.mu.Lock()
	defer r.mu.Unlock()
	created, err := b.ensureSets(ctx)
	if err == nil && b.opts.Rules != nil {
		err = b.opts.Rules(ctx)
	}
	if err != nil {
		if !r.failed && ctx.Err() == nil {
			b.log.Error("sets or rules missing and not repaired", "err", err)
		}
		r.failed = true
		return err
	}
	// Back from a failure (with --no-create, a set someone else made
	// again, empty): reconcile too.
	recovered := r.failed
	if recovered {
		b.log.Info("sets and rules in place again")
		r.failed = false
	}
	lost := r.lost.Swap(false)
	switch {
	case force:
	case created || lost || recovered:
		b.log.Warn("a set was removed behind vallum's back (a firewall reload?): created again, reconciling it to the broker's state")
	case b.witnessesGone(ctx): // it logs which set
	default:
		return nil
	}
	c := b.client.Load()
	if c == nil || !(*c).IsConnectionOpen() {
		return errNotConnected
	}
	b.spawn(func() { b.startSync(*c) })
	return nil
}
