package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// hubJoinRSS measures the hub's resident memory while hosts join a list of
// n bans (key hub_rss_100k_join_mb): the hub (`vallum broker -t`, its
// keeper cutting the list, without legacy state, its default memory
// settings) is fed n bans as per-ban state (feedKeeper); once it holds
// them as it does for good (settled), joiners real vallum hosts late-join
// the list one after the other, each into kernel sets of its own (one
// namespace: loopback clients are the hub's admins), and stay connected.
// The hub's RSS is sampled every 50 ms from the first join to the end of
// the last; it returns the peak, and the RSS holding the list before.
func hubJoinRSS(l *lab.Lab, dir, bin string, a *addrs, n, joiners int, timeout time.Duration) (peak, before int64, err error) {
	h, err := l.AddHost("hubjoin")
	if err != nil {
		return 0, 0, err
	}
	hub, err := h.Start(dir, bin, "broker", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "-t", list,
		"--legacy-state=false", "--data-dir", filepath.Join(dir, "hubjoin-store"), "--metrics", fmt.Sprintf("127.0.0.1:%d", hubMetrics))
	if err == nil {
		err = h.WaitPort(port, 20*time.Second)
	}
	if err != nil {
		return 0, 0, err
	}
	pub, err := connect(h, port, "bench-hubjoin")
	if err != nil {
		return 0, 0, err
	}
	err = feedKeeper(pub, a, n, false, time.Now().Add(15*time.Minute))
	pub.Disconnect(100)
	if err == nil {
		err = settled(h, n, time.Now().Add(2*time.Minute))
	}
	if err != nil {
		return 0, 0, err
	}
	if before, err = hub.RSS(); err != nil {
		return 0, 0, err
	}
	w, err := newWatcher(h)
	if err != nil {
		return 0, 0, err
	}
	defer w.close()
	top := before
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if rss, err := hub.RSS(); err == nil {
					top = max(top, rss) // read once this goroutine ended
				}
			}
		}
	}()
	stop := sync.OnceFunc(func() { close(done); <-sampled })
	defer stop()
	for i := range joiners {
		set := fmt.Sprintf("join%d", i)
		v, err := h.Start(dir, bin, "--data-dir", filepath.Join(dir, "hubjoin-"+set), "-h", "127.0.0.1",
			"-t", fmt.Sprintf("%s=%s,%s6", list, set, set))
		if err != nil {
			return 0, 0, err
		}
		if _, got, err := w.waitSize(set, n, time.Now().Add(timeout), 5*time.Millisecond); err != nil {
			return 0, 0, fmt.Errorf("joiner %d: %d of %d: %w\n%s", i, got, n, err, v.Output())
		}
		if err := v.WaitLog("msg=synced", timeout); err != nil {
			return 0, 0, err
		}
	}
	stop()
	return top, before, nil
}

// hubMetrics is the hub's /metrics port for settled.
const hubMetrics = 9109

// settled waits until the hub holds the list as it does for good: its
// keeper deleted the per-ban states its cuts took in (10 s after the cut
// for states made lately), so that the broker retains no more than the
// states of the bans changed since the last cut (at most 10,000 or 1 %),
// the chunks, the manifest and the record, and that count has been still
// for stillFor (the keeper cuts a burst's tail once it is still for 10 s).
// Measured before, the hub still held the 100,000 per-ban states the feed
// made (about 1.4 KB each).
func settled(h *lab.Host, n int, deadline time.Time) error {
	const stillFor = 12 * time.Second
	bound := max(10_000, n/100) + n/wire.MaxChunkEntries + 16
	last, since := -1.0, time.Now()
	for {
		m, err := h.Metrics(hubMetrics)
		v, ok := m["vallum_broker_retained"]
		if err != nil || !ok || v != last {
			last, since = v, time.Now()
		}
		if err == nil && ok && int(v) <= bound && time.Since(since) >= stillFor {
			fmt.Fprintf(os.Stderr, "bench: the hub retains %v messages, still for %v (%s)\n", v, stillFor, time.Now().Format("15:04:05.0"))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the hub still retains %v messages (%v), want at most %d, still for %v", v, err, bound, stillFor)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
