package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// probingFake is a fakeBackend that can look one entry up, as the ipset
// and nft backends do; onApply, when set, runs after each Apply changed
// the set and before it returns.
type probingFake struct {
	*fakeBackend
	probes  atomic.Int64
	onApply func(set string, ops []Op)
}

func (p *probingFake) Has(_ context.Context, set string, pr netip.Prefix) (bool, error) {
	p.probes.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.sets[set]
	if !ok {
		return false, fmt.Errorf("fake %q: %w", set, ErrNoSet)
	}
	_, ok = m[pr]
	return ok, nil
}

func (p *probingFake) Apply(ctx context.Context, set string, ops []Op) error {
	err := p.fakeBackend.Apply(ctx, set, ops)
	if p.onApply != nil {
		p.onApply(set, ops)
	}
	return err
}

// A set emptied in place (flushed, or destroyed and made again between two
// checks) gets every ban back, with its timeout; while nothing happens,
// the watcher's lookups find the witness and resync nothing.
func TestEmptiedSetIsRefilled(t *testing.T) {
	_, url := startBroker(t, nil)
	want := retainBans(t, url, 101)
	f := &probingFake{fakeBackend: newFake()}
	r := startBridge(t, url, f, func(o *Options) { o.WatchEvery = 20 * time.Millisecond })
	r.waitSynced(t, 1)
	wantMembers(t, f.fakeBackend, "bl", want...)
	eventually(t, func() bool { return f.probes.Load() >= 5 }, "the watcher to look up witnesses")
	if n, s := r.b.stats.SetsEmptied.Load(), r.b.stats.Syncs.Load(); n != 0 || s != 1 {
		t.Fatalf("in normal operation: %d sets found emptied, %d syncs; want 0 and 1", n, s)
	}
	f.create("bl", IPv4) // the same set, empty
	wantMembers(t, f.fakeBackend, "bl", want...)
	r.waitSynced(t, 2)
	if n := r.b.stats.SetsEmptied.Load(); n != 1 {
		t.Errorf("sets found emptied = %d, want 1", n)
	}
	for _, a := range want {
		if e, _ := f.entry("bl", a+"/32"); e.Timeout <= 0 || e.Comment != CommentState {
			t.Fatalf("%s put back as %+v, want a timeout and comment %q", a, e, CommentState)
		}
	}
}

// An entry the worker has just deleted from the kernel, but not yet from
// what it owns, is no sign of a reload: the watcher's lookup waits for the
// worker. An entry removed behind vallum's back is.
func TestWitnessDeletedByTheWorkerIsNoReload(t *testing.T) {
	f := &probingFake{fakeBackend: newFake()}
	b, err := New(Options{Lists: []List{{Root: "bl"}}, Broker: "tcp://127.0.0.1:1", ClientID: "w", QoS: 1, Create: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, f)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := b.app.ensureSets(ctx); err != nil {
		t.Fatal(err)
	}
	w := netip.MustParsePrefix("192.0.2.1/32")
	b.app.applySet(ctx, "bl", []Op{{Action: Add, Prefix: w, Comment: CommentState}})

	deleted, release := make(chan struct{}), make(chan struct{})
	f.onApply = func(_ string, ops []Op) {
		if ops[0].Action == Del {
			close(deleted)
			<-release
		}
	}
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		b.app.applySet(ctx, "bl", []Op{{Action: Del, Prefix: w}})
	}()
	<-deleted // gone from the kernel, still owned
	gone := make(chan bool, 1)
	go func() { gone <- b.app.witnessGone(ctx, f, "bl") }()
	select {
	case g := <-gone:
		t.Fatalf("the witness was looked up while the worker was applying (gone = %v)", g)
	case <-time.After(100 * time.Millisecond): // waiting for the worker, as it must
	}
	close(release)
	<-applied
	if <-gone {
		t.Fatal("an entry the worker deleted was taken for a reload")
	}

	// The control: the same lookup notices an entry removed by someone else.
	f.onApply = nil
	b.app.applySet(ctx, "bl", []Op{{Action: Add, Prefix: w, Comment: CommentState}})
	f.create("bl", IPv4)
	if !b.app.witnessGone(ctx, f, "bl") {
		t.Fatal("an entry flushed behind vallum's back was not noticed")
	}
	if n := b.stats.SetsEmptied.Load(); n != 1 {
		t.Errorf("sets found emptied = %d, want 1", n)
	}
	if b.app.witnessGone(ctx, f, "bl") {
		t.Error("noticed again before the resync: what vallum owns must follow the set")
	}
}

// The witness is an address entry that lasts: permanent first, never one
// about to expire, and it is kept while it stays a good one.
func TestWitnessChoice(t *testing.T) {
	var w ownership
	now := uint32(1000)
	p := netip.MustParsePrefix
	w.load("s", nil)
	put := func(s string, exp uint32) {
		w.mu.Lock()
		w.sets["s"].put(p(s), exp)
		w.mu.Unlock()
	}
	put("10.0.0.0/8", 0) // a prefix: not a witness
	put("192.0.2.1/32", now+2)
	if got, ok := w.witness("s", netip.Prefix{}, now); ok {
		t.Fatalf("witness = %v, want none (a prefix, an entry about to expire)", got)
	}
	put("192.0.2.2/32", now+100)
	put("2001:db8::1/128", now+50)
	if got, _ := w.witness("s", netip.Prefix{}, now); got != p("192.0.2.2/32") {
		t.Fatalf("witness = %v, want the latest expiry 192.0.2.2/32", got)
	}
	put("2001:db8::2/128", 0)
	if got, _ := w.witness("s", netip.Prefix{}, now); got != p("2001:db8::2/128") {
		t.Fatalf("witness = %v, want the permanent 2001:db8::2/128", got)
	}
	if got, _ := w.witness("s", p("192.0.2.2/32"), now); got != p("192.0.2.2/32") {
		t.Fatalf("witness = %v, want the previous one kept", got)
	}
	if got, _ := w.witness("s", p("192.0.2.2/32"), now+99); got != p("2001:db8::2/128") {
		t.Fatalf("witness = %v, want another once the previous is about to expire", got)
	}
}
