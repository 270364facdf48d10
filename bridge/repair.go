package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
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
func (a *applier) setLost() {
	a.repairs.lost.Store(true)
	if a.opts.WatchEvery < 0 { // no watcher to wake
		a.stop.spawn(func() { _ = a.repair(a.stop.ctx, false) })
		return
	}
	select {
	case a.repairs.poke <- struct{}{}:
	default:
	}
}

// watch checks the sets and rules until ctx is done.
func (a *applier) watch(ctx context.Context) {
	if a.opts.WatchEvery < 0 {
		return
	}
	t := time.NewTicker(a.opts.WatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.repairs.poke:
		}
		_ = a.repair(ctx, false)
	}
}

var errNotConnected = errors.New("not connected: the sets are reconciled when the connection is back")

// repair makes sure the sets and the rules exist. When a set had to be
// created again, or force is set (SIGHUP), it reconciles the sets to the
// broker's state.
func (a *applier) repair(ctx context.Context, force bool) error {
	r := &a.repairs
	r.mu.Lock()
	defer r.mu.Unlock()
	created, err := a.ensureSets(ctx)
	if err == nil && a.opts.Rules != nil {
		err = a.opts.Rules(ctx)
	}
	if err != nil {
		if !r.failed && ctx.Err() == nil {
			a.log.Error("sets or rules missing and not repaired", "err", err)
		}
		r.failed = true
		return err
	}
	// Back from a failure (with --no-create, a set someone else made
	// again, empty): reconcile too.
	recovered := r.failed
	if recovered {
		a.log.Info("sets and rules in place again")
		r.failed = false
	}
	lost := r.lost.Swap(false)
	switch {
	case force:
	case created || lost || recovered:
		a.log.Warn("a set was removed behind vallum's back (a firewall reload?): created again, reconciling it to the broker's state")
	case a.witnessesGone(ctx): // it logs which set
	default:
		return nil
	}
	c := a.client.Load()
	if c == nil || !(*c).IsConnectionOpen() {
		return errNotConnected
	}
	a.stop.spawn(func() { a.newSync(*c) })
	return nil
}

// ensureSets checks every set, creating those that are missing when
// allowed, and reports whether it created one.
func (a *applier) ensureSets(ctx context.Context) (created bool, err error) {
	for _, l := range a.opts.Lists {
		for _, name := range []string{l.Set4, l.Set6} {
			info, err := a.be.Ensure(ctx, a.specs[name])
			if err != nil {
				return created, fmt.Errorf("set %q for topic %q: %w", name, l.Root, err)
			}
			a.comments.set(name, info.Comments)
			if info.Created {
				if info.Comments {
					a.own.reset(name)
				}
				created = true
				a.log.Info("created set", "set", name, "type", info.Type, "family", info.Family.String(), "maxelem", info.MaxElem)
			}
		}
	}
	return created, nil
}

// loadOwned lists every set that takes comments, to know which of its
// entries are vallum's before the first message (see own.go).
func (a *applier) loadOwned(ctx context.Context) {
	listed := 0
	defer func() {
		if listed > bigSync { // give the listing's heap back, as a sync does
			debug.FreeOSMemory()
		}
	}()
	for _, l := range a.opts.Lists {
		for _, name := range []string{l.Set4, l.Set6} {
			if !a.comments.get(name) {
				continue
			}
			entries, err := a.be.List(ctx, name)
			if err != nil {
				a.log.Error("cannot list set: until a sync lists it, vallum cannot tell its entries from hand-made ones", "set", name, "err", err)
				continue
			}
			a.own.load(name, entries)
			listed += len(entries)
		}
	}
}
