//go:build linux

package ipset_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/backendtest"
	"github.com/vallum/vallum/bridge/ipset"
	"github.com/vallum/vallum/internal/netnstest"
	"github.com/vallum/vallum/internal/wire"
)

func open(t *testing.T, ns netns.NsHandle) bridge.Backend {
	t.Helper()
	be, err := ipset.New(ipset.Options{NetNS: int(ns)})
	if err != nil {
		t.Fatalf("ipset.New: %v", err)
	}
	return be
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, open)
}

// cli runs the ipset command inside ns, as an administrator would.
func cli(t *testing.T, ns netns.NsHandle, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("ipset"); err != nil {
		t.Skip("no ipset command")
	}
	path := fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), int(ns))
	out, err := exec.Command("nsenter", append([]string{path, "ipset"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ipset %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// setup returns a backend in a fresh netns, after running the given
// ipset commands there.
func setup(t *testing.T, cmds ...string) (*ipset.Backend, netns.NsHandle) {
	t.Helper()
	ns := netnstest.New(t)
	for _, c := range cmds {
		cli(t, ns, strings.Fields(c)...)
	}
	be, err := ipset.New(ipset.Options{NetNS: int(ns)})
	if err != nil {
		t.Fatalf("ipset.New: %v", err)
	}
	t.Cleanup(func() { be.Close() })
	return be, ns
}

func prefixes(t *testing.T, be *ipset.Backend, set string) []string {
	t.Helper()
	l, err := be.List(context.Background(), set)
	if err != nil {
		t.Fatalf("List(%s): %v", set, err)
	}
	var got []string
	for _, e := range l {
		got = append(got, e.Prefix.String())
	}
	slices.Sort(got)
	return got
}

func TestExistingHashIP(t *testing.T) {
	be, _ := setup(t, "create hosts hash:ip")
	ctx := context.Background()
	info, err := be.Ensure(ctx, bridge.SetSpec{Name: "hosts", Family: bridge.IPv4, Create: true})
	if err != nil || info.Created || info.Type != "hash:ip" {
		t.Fatalf("Ensure(hosts) = %+v, %v; want the existing hash:ip set, not created", info, err)
	}
	ops := []bridge.Op{
		{Action: bridge.Add, Prefix: netip.MustParsePrefix("192.0.2.1/32"), Timeout: 60}, // no timeout support: added without
		{Action: bridge.Add, Prefix: netip.MustParsePrefix("198.51.100.0/24")},
		{Action: bridge.Add, Prefix: netip.MustParsePrefix("192.0.2.2/32"), Comment: "vallum"},
	}
	err = be.Apply(ctx, "hosts", ops)
	var ae *bridge.ApplyError
	if !errors.As(err, &ae) || len(ae.Failed) != 1 || ae.Failed[0].Op != ops[1] || !errors.Is(err, bridge.ErrSetType) {
		t.Fatalf("Apply(a /24 into hash:ip) = %v, want one ApplyError for the /24 with ErrSetType", err)
	}
	if got, want := prefixes(t, be, "hosts"), []string{"192.0.2.1/32", "192.0.2.2/32"}; !slices.Equal(got, want) {
		t.Errorf("hosts holds %v, want %v", got, want)
	}
}

func TestExistingSetRefused(t *testing.T) {
	be, _ := setup(t, "create ports bitmap:port range 1-1024", "create six hash:net family inet6")
	ctx := context.Background()
	for _, c := range []struct {
		spec     bridge.SetSpec
		want     error
		mentions string
	}{
		{bridge.SetSpec{Name: "ports", Family: bridge.IPv4, Create: true}, bridge.ErrSetType, "bitmap:port"},
		{bridge.SetSpec{Name: "six", Family: bridge.IPv4, Create: true}, bridge.ErrFamily, "inet6"},
	} {
		_, err := be.Ensure(ctx, c.spec)
		if !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), c.spec.Name) || !strings.Contains(fmt.Sprint(err), c.mentions) {
			t.Errorf("Ensure(%+v) = %v, want %v naming %q and %q", c.spec, err, c.want, c.spec.Name, c.mentions)
		}
	}
}

func TestEnsureLeavesEntries(t *testing.T) {
	be, ns := setup(t, "create bans hash:net timeout 0", "add bans 192.0.2.0/24", "add bans 203.0.113.9 timeout 500")
	info, err := be.Ensure(context.Background(), bridge.SetSpec{Name: "bans", Family: bridge.IPv4, Create: true})
	if err != nil || info.Created || info.Size != 2 || info.Comments {
		t.Fatalf("Ensure(bans) = %+v, %v; want the existing set of 2 entries without comments", info, err)
	}
	if got, want := prefixes(t, be, "bans"), []string{"192.0.2.0/24", "203.0.113.9/32"}; !slices.Equal(got, want) {
		t.Errorf("after Ensure bans holds %v, want %v", got, want)
	}
	if out := cli(t, ns, "list", "bans"); !strings.Contains(out, "Number of entries: 2") {
		t.Errorf("ipset list bans after Ensure:\n%s\nwant 2 entries", out)
	}
}

func TestCreatedSetCapacity(t *testing.T) {
	be, ns := setup(t)
	ctx := context.Background()
	if _, err := be.Ensure(ctx, bridge.SetSpec{Name: "feed6", Family: bridge.IPv6, Create: true}); err != nil {
		t.Fatalf("Ensure(feed6): %v", err)
	}
	info, err := be.Info(ctx, "feed6")
	if err != nil || info.MaxElem < bridge.DefaultMaxElem || info.Type != "hash:net" || info.Family != bridge.IPv6 {
		t.Fatalf("Info(feed6) = %+v, %v; want hash:net inet6 with maxelem >= %d", info, err, bridge.DefaultMaxElem)
	}
	out := cli(t, ns, "list", "-t", "feed6")
	if !strings.Contains(out, fmt.Sprintf("maxelem %d", bridge.DefaultMaxElem)) || !strings.Contains(out, "timeout 0") || !strings.Contains(out, "comment") {
		t.Errorf("ipset list -t feed6:\n%s\nwant maxelem %d, timeout 0, comment", out, bridge.DefaultMaxElem)
	}
}

func TestMissingSet(t *testing.T) {
	be, _ := setup(t)
	ctx := context.Background()
	if _, err := be.Info(ctx, "nope"); !errors.Is(err, bridge.ErrNoSet) {
		t.Errorf("Info(nope) = %v, want ErrNoSet", err)
	}
	if _, err := be.List(ctx, "nope"); !errors.Is(err, bridge.ErrNoSet) {
		t.Errorf("List(nope) = %v, want ErrNoSet", err)
	}
}

func TestSetDestroyedBehindOurBack(t *testing.T) {
	be, ns := setup(t)
	ctx := context.Background()
	spec := bridge.SetSpec{Name: "gone", Family: bridge.IPv4, Create: true}
	if _, err := be.Ensure(ctx, spec); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	cli(t, ns, "destroy", "gone")
	op := bridge.Op{Action: bridge.Add, Prefix: netip.MustParsePrefix("192.0.2.1/32"), Timeout: wire.DefaultTimeout}
	if err := be.Apply(ctx, "gone", []bridge.Op{op}); !errors.Is(err, bridge.ErrNoSet) {
		t.Fatalf("Apply to a destroyed set = %v, want ErrNoSet", err)
	}
	// Recreated as an IPv6 set: the first Apply may fail in the kernel,
	// after which the backend knows the new family and says so.
	cli(t, ns, "create", "gone", "hash:net", "family", "inet6")
	if err := be.Apply(ctx, "gone", []bridge.Op{op}); !errors.Is(err, bridge.ErrFamily) {
		t.Fatalf("Apply of IPv4 to the set recreated as inet6 = %v, want ErrFamily", err)
	}
	// Cached as inet6, now inet: the backend reads the header again
	// rather than refuse by its cache.
	cli(t, ns, "destroy", "gone")
	cli(t, ns, "create", "gone", "hash:net")
	if err := be.Apply(ctx, "gone", []bridge.Op{op}); err != nil {
		t.Fatalf("Apply to the set recreated as inet = %v, want nil", err)
	}
	// Cached as inet, now inet6 with the same name, never missing in
	// between: the kernel refuses, and the next Apply knows better.
	cli(t, ns, "create", "tmp6", "hash:net", "family", "inet6")
	cli(t, ns, "rename", "gone", "old")
	cli(t, ns, "rename", "tmp6", "gone")
	err := be.Apply(ctx, "gone", []bridge.Op{op})
	var ae *bridge.ApplyError
	if !errors.As(err, &ae) {
		t.Fatalf("Apply of IPv4 to a set renamed over as inet6 = %v, want an ApplyError", err)
	}
	t.Logf("kernel refusal: %v", err)
	if err := be.Apply(ctx, "gone", []bridge.Op{op}); !errors.Is(err, bridge.ErrFamily) {
		t.Fatalf("second Apply of IPv4 to the renamed set = %v, want ErrFamily", err)
	}
}

func TestNewBadNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	if _, err := ipset.New(ipset.Options{NetNS: 1 << 20}); err == nil {
		t.Fatal("New with a namespace fd that is not open: no error")
	}
}

// Has answers as `ipset test` does: members yes (an address inside a
// member prefix too), others no, the other family no, and a missing set is ErrNoSet.
func TestHas(t *testing.T) {
	be, ns := setup(t, "create h4 hash:net timeout 0", "add h4 192.0.2.1", "add h4 198.51.100.0/24",
		"create hip hash:ip family inet6", "add hip 2001:db8::1")
	ctx := context.Background()
	cases := []struct {
		set, prefix string
		want        bool
	}{
		{"h4", "192.0.2.1/32", true},
		{"h4", "192.0.2.2/32", false},
		{"h4", "198.51.100.0/24", true},
		{"h4", "198.51.100.7/32", true}, // an address is in when a prefix holding it is
		{"h4", "198.51.0.0/16", false},
		{"h4", "2001:db8::1/128", false},
		{"hip", "2001:db8::1/128", true},
		{"hip", "2001:db8::2/128", false},
		{"hip", "2001:db8::/64", false},
	}
	for _, c := range cases {
		got, err := be.Has(ctx, c.set, netip.MustParsePrefix(c.prefix))
		if err != nil || got != c.want {
			t.Errorf("Has(%s, %s) = %v, %v; want %v", c.set, c.prefix, got, err, c.want)
		}
	}
	cli(t, ns, "del", "h4", "192.0.2.1")
	if got, err := be.Has(ctx, "h4", netip.MustParsePrefix("192.0.2.1/32")); got || err != nil {
		t.Errorf("after ipset del: Has = %v, %v", got, err)
	}
	if _, err := be.Has(ctx, "nope", netip.MustParsePrefix("192.0.2.1/32")); !errors.Is(err, bridge.ErrNoSet) {
		t.Errorf("missing set: err = %v, want ErrNoSet", err)
	}
}

// Ensure checks a known set with IPSET_CMD_HEADER, which does not walk it:
// a set destroyed behind its back is still noticed and created again.
func TestEnsureNoticesDestroyedSet(t *testing.T) {
	ns := netnstest.New(t)
	be := open(t, ns)
	defer be.Close()
	ctx := context.Background()
	spec := bridge.SetSpec{Name: "blacklist", Family: bridge.IPv4, Create: true}
	for i, wantCreated := range []bool{true, false} {
		if info, err := be.Ensure(ctx, spec); err != nil || info.Created != wantCreated || !info.Comments {
			t.Fatalf("Ensure #%d = %+v, %v; want created %v, with comments", i+1, info, err, wantCreated)
		}
	}
	cli(t, ns, "destroy", "blacklist")
	if info, err := be.Ensure(ctx, spec); err != nil || !info.Created {
		t.Fatalf("Ensure after ipset destroy = %+v, %v; want the set created again", info, err)
	}
	cli(t, ns, "destroy", "blacklist")
	cli(t, ns, "create", "blacklist", "hash:ip", "family", "inet6")
	if _, err := be.Ensure(ctx, spec); !errors.Is(err, bridge.ErrSetType) && !errors.Is(err, bridge.ErrFamily) {
		t.Fatalf("Ensure after the set was made again as hash:ip inet6 = %v, want it refused", err)
	}
}
