package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/ipset"
	"github.com/vallum/vallum/bridge/nft"
	"github.com/vallum/vallum/internal/lab"
)

// applyRate adds n new addresses to a fresh set through the backend, in
// batches of batch ops (with a timeout and vallum's comment, as the bridge
// sends them), and returns adds per second. The set is checked to hold
// all n afterwards.
func applyRate(be bridge.Backend, a *addrs, n, batch int, deadline time.Time) (float64, error) {
	ctx := context.Background()
	if _, err := be.Ensure(ctx, bridge.SetSpec{Name: "bench", Family: bridge.IPv4, Create: true}); err != nil {
		return 0, fmt.Errorf("ensure: %w", err)
	}
	var took time.Duration
	ops := make([]bridge.Op, 0, batch)
	for done := 0; done < n; done += batch {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("deadline after %d of %d adds", done, n)
		}
		ops = ops[:0]
		for _, ad := range a.take(min(batch, n-done)) {
			ops = append(ops, bridge.Op{Action: bridge.Add, Prefix: netip.PrefixFrom(ad, 32), Timeout: 3600, Comment: bridge.CommentState})
		}
		start := time.Now()
		if err := be.Apply(ctx, "bench", ops); err != nil {
			return 0, fmt.Errorf("apply: %w", err)
		}
		took += time.Since(start)
	}
	info, err := be.Info(ctx, "bench")
	if err != nil {
		return 0, err
	}
	size := info.Size
	if size < 0 { // nftables does not count: list the set (not timed)
		l, err := be.List(ctx, "bench")
		if err != nil {
			return 0, err
		}
		size = len(l)
	}
	if size != n {
		return 0, fmt.Errorf("set holds %d entries after %d adds", size, n)
	}
	return float64(n) / took.Seconds(), nil
}

func ipsetApply(h *lab.Host, a *addrs, n int, deadline time.Time) (float64, error) {
	ns, err := h.NetNS()
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	be, err := ipset.New(ipset.Options{NetNS: int(ns)})
	if err != nil {
		return 0, err
	}
	defer be.Close()
	return applyRate(be, a, n, 10000, deadline)
}

func nftApply(h *lab.Host, a *addrs, n int, deadline time.Time) (float64, error) {
	ns, err := h.NetNS()
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	be, err := nft.New(nft.Options{NetNS: int(ns)})
	if err != nil {
		return 0, err
	}
	defer be.Close()
	return applyRate(be, a, n, 10000, deadline)
}
