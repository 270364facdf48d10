package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"time"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/ipset"
	"github.com/vallum/vallum/bridge/nft"
	"github.com/vallum/vallum/internal/lab"
)

// applyRate adds the new addresses as to a fresh set through the backend,
// in batches of batch ops (with a timeout and vallum's comment, as the
// bridge sends them), and returns adds per second. The set is checked to
// hold them all afterwards.
func applyRate(be bridge.Backend, as []netip.Addr, batch int, deadline time.Time) (float64, error) {
	ctx := context.Background()
	n := len(as)
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
		for _, ad := range as[done:min(done+batch, n)] {
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

// ipsetApply returns the rate of vallum's ipset backend for n new
// addresses, then that of `ipset restore` of the same addresses, with the
// same timeout and comment, into a set made as vallum makes its own: the
// kernel's own tool is the baseline of the apply rate.
func ipsetApply(h *lab.Host, a *addrs, n int, deadline time.Time) (vallum, restore float64, err error) {
	ns, err := h.NetNS()
	if err != nil {
		return 0, 0, err
	}
	defer ns.Close()
	be, err := ipset.New(ipset.Options{NetNS: int(ns)})
	if err != nil {
		return 0, 0, err
	}
	defer be.Close()
	as := a.take(n)
	if vallum, err = applyRate(be, as, 10000, deadline); err != nil {
		return 0, 0, err
	}
	// One set of n at a time: the full size is a million entries.
	if _, err := h.Exec("ipset", "destroy", "bench"); err != nil {
		return vallum, 0, err
	}
	restore, err = ipsetRestore(h, as, deadline)
	return vallum, restore, err
}

// ipsetRestore creates a set as vallum does (hash:net, timeout, comment),
// then times one `ipset -exist restore` that adds as to it, from the start
// of the process until it exits, and checks the set holds them all.
func ipsetRestore(h *lab.Host, as []netip.Addr, deadline time.Time) (float64, error) {
	const set = "bench-restore"
	if _, err := h.Exec("ipset", "create", set, "hash:net", "timeout", "0", "comment",
		"maxelem", strconv.Itoa(bridge.DefaultMaxElem)); err != nil {
		return 0, err
	}
	defer h.Exec("ipset", "destroy", set)
	var in bytes.Buffer
	for _, ad := range as {
		fmt.Fprintf(&in, "add %s %s timeout 3600 comment %q\n", set, ad, bridge.CommentState)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmd := h.Command("ipset", "-exist", "restore")
	cmd = exec.CommandContext(ctx, cmd.Args[0], cmd.Args[1:]...)
	cmd.Stdin = &in
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("ipset restore: %w: %s", err, firstLine(string(out)))
	}
	size, err := h.SetCount(set)
	if err != nil {
		return 0, err
	}
	if size != len(as) {
		return 0, fmt.Errorf("ipset restore: set holds %d entries after %d adds", size, len(as))
	}
	return float64(len(as)) / took.Seconds(), nil
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
	return applyRate(be, a.take(n), 10000, deadline)
}
