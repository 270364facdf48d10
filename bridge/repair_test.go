package bridge

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// retainBans publishes n retained bans 203.0.113.0 + i (and 2001:db8::i
// for the first) on list bl and returns their addresses.
func retainBans(t *testing.T, url string, n int) []string {
	t.Helper()
	pub := publisher(t, url)
	var want []string
	for i := range n {
		a := fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)
		publish(t, pub, "bl/ban/"+a, true, string(wire.EncodeState(wire.State{At: time.Now(), Expires: time.Now().Add(time.Hour)})))
		want = append(want, a)
	}
	return want
}

// A set destroyed while vallum runs comes back with every ban the broker
// holds, not only the batch that found it missing: by the worker, when a
// message finds it gone, and by the watcher, when none comes.
func TestDestroyedSetComesBackWithAllBans(t *testing.T) {
	for _, tt := range []struct {
		name  string
		watch time.Duration
	}{{"next message", -1}, {"watcher", 50 * time.Millisecond}} {
		t.Run(tt.name, func(t *testing.T) {
			_, url := startBroker(t, nil)
			want := retainBans(t, url, 101)
			f := newFake()
			r := startBridge(t, url, f, func(o *Options) { o.WatchEvery = tt.watch })
			r.waitSynced(t, 1)
			wantMembers(t, f, "bl", want...)
			f.destroy("bl")
			if tt.watch < 0 {
				publish(t, publisher(t, url), "bl/add", false, "192.0.2.77")
				want = append(want, "192.0.2.77")
			}
			wantMembers(t, f, "bl", want...)
		})
	}
}

// Rules are put back by the watcher when missing, and after a set was
// created again.
func TestWatcherPutsRulesBack(t *testing.T) {
	_, url := startBroker(t, nil)
	f := newFake()
	var calls atomic.Int64
	r := startBridge(t, url, f, func(o *Options) {
		o.WatchEvery = 20 * time.Millisecond
		o.Rules = func(context.Context) error { calls.Add(1); return nil }
	})
	r.waitSynced(t, 1)
	eventually(t, func() bool { return calls.Load() >= 3 }, "rules checked by the watcher")
}

// SIGHUP (Resync) while the worker reconciles: the sets' flags are written
// by one and read by the other (a data race the race detector reported).
func TestResyncWhileReconciling(t *testing.T) {
	_, url := startBroker(t, nil)
	want := retainBans(t, url, 300)
	f := newFake()
	r := startBridge(t, url, f, func(o *Options) { o.WatchEvery = time.Millisecond })
	r.waitSynced(t, 1)
	for range 20 {
		if err := r.b.Resync(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.waitSynced(t, 2)
	wantMembers(t, f, "bl", want...)
}

// With --no-create, a set removed by a reload is not created by vallum;
// when the firewall's scripts create it again, empty, vallum notices and
// puts every ban back.
func TestNoCreateSetMadeAgainIsRefilled(t *testing.T) {
	_, url := startBroker(t, nil)
	want := retainBans(t, url, 50)
	f := newFake()
	f.create("bl", IPv4)
	f.create("bl6", IPv6)
	r := startBridge(t, url, f, func(o *Options) { o.Create, o.WatchEvery = false, 20*time.Millisecond })
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", want...)
	f.destroy("bl")
	eventually(t, func() bool { return r.b.app.repairs.isFailed() }, "the watcher to see the set missing")
	f.create("bl", IPv4)
	wantMembers(t, f, "bl", want...)
}

func (r *repairs) isFailed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}
