//go:build linux

package nft

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/netnstest"
	"github.com/vallum/vallum/internal/wire"
)

func TestOverlappingPrefixes(t *testing.T) {
	ns := netnstest.New(t)
	b := openNft(t, ns, "")
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Ensure(ctx, bridge.SetSpec{Name: "bl", Family: bridge.IPv4, Create: true}); err != nil {
		t.Fatal(err)
	}
	var ops []bridge.Op
	for _, p := range []string{"10.0.0.0/16", "10.0.0.5/32", "10.0.1.0/24", "10.2.0.0/16"} {
		ops = append(ops, bridge.Op{Action: bridge.Add, Prefix: mustPrefix(p), Timeout: wire.DefaultTimeout})
	}
	err := b.Apply(ctx, "bl", ops)
	var ae *bridge.ApplyError
	if !errors.As(err, &ae) || len(ae.Failed) != 1 || ae.Failed[0].Op.Prefix != mustPrefix("10.0.1.0/24") || !errors.Is(err, ErrOverlap) {
		t.Fatalf("Apply(overlapping prefixes) = %v, want only the /24 inside the /16 refused with ErrOverlap", err)
	}
	got := map[string]bool{}
	list, _ := b.List(ctx, "bl")
	for _, e := range list {
		got[e.Prefix.String()] = true
	}
	for _, want := range []string{"10.0.0.0/16", "10.0.0.5/32", "10.2.0.0/16"} {
		if !got[want] {
			t.Errorf("after overlapping batch, set lacks %s; has %v (Apply: %v)", want, got, err)
		}
	}
}

func TestEnsureRulesIsIdempotent(t *testing.T) {
	ns := netnstest.New(t)
	b := openNft(t, ns, "")
	defer b.Close()
	ctx := context.Background()
	specs := []bridge.SetSpec{{Name: "blacklist", Family: bridge.IPv4, Create: true}, {Name: "blacklist6", Family: bridge.IPv6, Create: true}}
	for _, s := range specs {
		if _, err := b.Ensure(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := b.EnsureRules(ctx, specs); err != nil {
			t.Fatalf("EnsureRules: %v", err)
		}
	}
	out := nftIn(t, ns, "", "list", "table", "inet", "vallum")
	for _, want := range []string{
		"ip saddr @blacklist counter packets 0 bytes 0 drop", "ip saddr @blacklist_net counter packets 0 bytes 0 drop",
		"ip6 saddr @blacklist6 counter packets 0 bytes 0 drop", "ip6 saddr @blacklist6_net counter packets 0 bytes 0 drop",
		"hook input priority filter - 10", "hook forward priority filter - 10",
	} {
		if n := strings.Count(out, want); n != 2 && strings.Contains(want, "saddr") || n == 0 {
			t.Errorf("table has %q %d times, want once per chain (twice):\n%s", want, n, out)
		}
	}
	if err := b.EnsureRules(ctx, []bridge.SetSpec{{Name: "nosuch", Family: bridge.IPv4}}); !errors.Is(err, bridge.ErrNoSet) {
		t.Errorf("EnsureRules(missing set) = %v, want ErrNoSet", err)
	}
}

// RulesInPlace sees the drop rules gone after a reload (a flushed chain, a
// deleted table), and in place again after EnsureRules.
func TestRulesInPlace(t *testing.T) {
	ns := netnstest.New(t)
	b := openNft(t, ns, "")
	defer b.Close()
	ctx := context.Background()
	specs := []bridge.SetSpec{{Name: "blacklist", Family: bridge.IPv4, Create: true}, {Name: "blacklist6", Family: bridge.IPv6, Create: true}}
	ensure := func() {
		t.Helper()
		for _, s := range specs {
			if _, err := b.Ensure(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.EnsureRules(ctx, specs); err != nil {
			t.Fatal(err)
		}
	}
	inPlace := func(want bool, when string) {
		t.Helper()
		if got, err := b.RulesInPlace(ctx, specs); err != nil || got != want {
			t.Fatalf("%s: RulesInPlace = %v, %v; want %v", when, got, err, want)
		}
	}
	ensure()
	inPlace(true, "after EnsureRules")
	nftIn(t, ns, "", "flush", "chain", "inet", "vallum", "forward")
	inPlace(false, "after flush chain forward")
	ensure()
	inPlace(true, "after EnsureRules again")
	nftIn(t, ns, "", "delete", "rule", "inet", "vallum", "input", "handle",
		firstHandle(t, nftIn(t, ns, "", "-a", "list", "chain", "inet", "vallum", "input")))
	inPlace(false, "after one rule deleted")
	nftIn(t, ns, "", "flush", "ruleset")
	inPlace(false, "after flush ruleset")
}

// firstHandle returns the handle of the first rule in `nft -a` output.
func firstHandle(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "drop") {
			if _, h, ok := strings.Cut(line, "# handle "); ok {
				return strings.TrimSpace(h)
			}
		}
	}
	t.Fatalf("no rule handle in:\n%s", out)
	return ""
}

// An add with Keep that the interval set refuses says why: the same prefix
// is there (left as it is), or another overlaps it.
func TestKeepInIntervalSet(t *testing.T) {
	ns := netnstest.New(t)
	b := openNft(t, ns, "")
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Ensure(ctx, bridge.SetSpec{Name: "bl", Family: bridge.IPv4, Create: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(ctx, "bl", []bridge.Op{{Action: bridge.Add, Prefix: mustPrefix("10.0.0.0/16"), Timeout: wire.DefaultTimeout}}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]error{"10.0.0.0/16": bridge.ErrExists, "10.0.1.0/24": ErrOverlap, "10.0.0.0/8": ErrOverlap} {
		err := b.Apply(ctx, "bl", []bridge.Op{{Action: bridge.Add, Prefix: mustPrefix(p), Timeout: 60, Keep: true}})
		if !errors.Is(err, want) {
			t.Errorf("keep add %s = %v, want %v", p, err, want)
		}
	}
}
