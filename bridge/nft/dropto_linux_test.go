//go:build linux

package nft

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/conntrack"
	"github.com/vallum/vallum/internal/netnstest"
)

// TestDropToRules: DropTo adds, on forward only, a daddr drop for each set
// it names (and its companion); RulesInPlace misses it when it is gone.
func TestDropToRules(t *testing.T) {
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
	b.DropTo("blacklist")
	if err := b.EnsureRules(ctx, specs); err != nil {
		t.Fatal(err)
	}
	fwd := nftIn(t, ns, "", "list", "chain", "inet", "vallum", "forward")
	in := nftIn(t, ns, "", "list", "chain", "inet", "vallum", "input")
	for _, want := range []string{"ip daddr @blacklist counter", "ip daddr @blacklist_net counter", "ip saddr @blacklist counter", "ip6 saddr @blacklist6 counter"} {
		if !strings.Contains(fwd, want) {
			t.Errorf("forward lacks %q:\n%s", want, fwd)
		}
	}
	if strings.Contains(fwd, "ip6 daddr") || strings.Contains(in, "daddr") {
		t.Errorf("daddr rules beyond the forward rules of blacklist:\n%s\n%s", in, fwd)
	}
	if ok, err := b.RulesInPlace(ctx, specs); !ok || err != nil {
		t.Fatalf("RulesInPlace = %v, %v after EnsureRules", ok, err)
	}
	out := nftIn(t, ns, "", "-a", "list", "chain", "inet", "vallum", "forward")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "ip daddr @blacklist_net counter") {
			_, h, _ := strings.Cut(line, "# handle ")
			nftIn(t, ns, "", "delete", "rule", "inet", "vallum", "forward", "handle", strings.TrimSpace(h))
		}
	}
	if ok, err := b.RulesInPlace(ctx, specs); ok || err != nil {
		t.Errorf("RulesInPlace = %v, %v with the daddr rule deleted, want false", ok, err)
	}
}

// TestDropToLeavesNoConntrackEntry: on a router whose own firewall tracks
// connections, a server inside that sends to a banned address (its
// retransmissions, once the flow's entry is deleted) makes no conntrack
// entry of that address when DropTo names its set, and does without.
func TestDropToLeavesNoConntrackEntry(t *testing.T) {
	l := newLab(t)
	fd, err := os.Open("/run/netns/" + l.rtr)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	b, err := New(Options{NetNS: int(fd.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	specs := []bridge.SetSpec{{Name: "blacklist", Family: bridge.IPv4, Create: true}, {Name: "blacklist6", Family: bridge.IPv6, Create: true}}
	for _, s := range specs {
		if _, err := b.Ensure(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	b.DropTo("blacklist") // not blacklist6: the contrast
	if err := b.EnsureRules(ctx, specs); err != nil {
		t.Fatal(err)
	}
	// The usual router firewall: established first. It makes the namespace track.
	l.in(l.rtr, "nft", "add table inet filt; add chain inet filt fw { type filter hook forward priority 0; }; add rule inet filt fw ct state established,related accept")
	ct, err := conntrack.Dial(int(fd.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	for _, c := range []struct {
		set, bad string
		entry    bool
	}{{"blacklist", "10.77.1.2", false}, {"blacklist6", "2001:db8:1::2", true}} {
		if err := b.Apply(ctx, c.set, []bridge.Op{{Action: bridge.Add, Prefix: mustPrefix(c.bad), Timeout: 600}}); err != nil {
			t.Fatal(err)
		}
		exec.Command("ip", "netns", "exec", l.srv, "ping", "-c1", "-W1", c.bad).Run()
		bad := netip.MustParseAddr(c.bad)
		n, err := ct.Delete(func(a netip.Addr) bool { return a == bad })
		if err != nil {
			t.Fatal(err)
		}
		if (n > 0) != c.entry {
			t.Errorf("%s: %d conntrack entries of %s on the router after the server sent to it, want entries: %v", c.set, n, c.bad, c.entry)
		}
	}
}

// TestDroppedCounts: packets a banned address sends to the router and
// through it are counted for its list, on input and forward; those of the
// other family's list and of an address not banned are not.
func TestDroppedCounts(t *testing.T) {
	l := newLab(t)
	fd, err := os.Open("/run/netns/" + l.rtr)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	b, err := New(Options{NetNS: int(fd.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	specs := []bridge.SetSpec{{Name: "blacklist", Family: bridge.IPv4, Create: true}, {Name: "blacklist6", Family: bridge.IPv6, Create: true}}
	for _, s := range specs {
		if _, err := b.Ensure(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.EnsureRules(ctx, specs); err != nil {
		t.Fatal(err)
	}
	if !l.reachable("10.77.1.3", "10.77.2.2") {
		t.Fatal("no route through the router")
	}
	if err := b.Apply(ctx, "blacklist", []bridge.Op{{Action: bridge.Add, Prefix: mustPrefix("10.77.1.2"), Timeout: 600}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l.ping("10.77.1.2", "10.77.1.1") // to the router: input
		l.ping("10.77.1.2", "10.77.2.2") // through it: forward
		l.ping("10.77.1.3", "10.77.2.2") // not banned
	}
	got, err := b.Dropped(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if c := got["blacklist"]; c.Packets != 6 || c.Bytes < 6*84 {
		t.Errorf("Dropped[blacklist] = %+v, want 6 packets of at least 84 bytes", c)
	}
	if c := got["blacklist6"]; c.Packets != 0 {
		t.Errorf("Dropped[blacklist6] = %+v, want none", c)
	}
}
