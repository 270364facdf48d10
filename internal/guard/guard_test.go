package guard

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/vallum/vallum/internal/wire"
)

// TestGuardCheck walks every built-in range, a configured CIDR, the dynamic
// addresses, prefixes that cover an allowed address and the prefix limits.
func TestGuardCheck(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25"), netip.MustParsePrefix("2001:db8:aa::/48")}
	g := New(allow, 0, 0)
	g.SetDynamic([]netip.Prefix{netip.MustParsePrefix("10.77.0.5/32"), netip.MustParsePrefix("fd77::5/128")})
	tests := []struct {
		prefix string
		want   error // nil: may be banned
	}{
		// built-in: loopback, unspecified, link-local, multicast, broadcast
		{"127.0.0.1/32", ErrAllowlisted},
		{"127.255.255.254/32", ErrAllowlisted},
		{"127.0.0.0/8", ErrAllowlisted},
		{"0.0.0.0/32", ErrAllowlisted},
		{"169.254.1.1/32", ErrAllowlisted},
		{"224.0.0.1/32", ErrAllowlisted},
		{"239.255.255.250/32", ErrAllowlisted},
		{"255.255.255.255/32", ErrAllowlisted},
		{"::1/128", ErrAllowlisted},
		{"::/128", ErrAllowlisted},
		{"fe80::1/128", ErrAllowlisted},
		{"febf::1/128", ErrAllowlisted},
		{"ff02::1/128", ErrAllowlisted},
		// configured CIDRs: inside, and a prefix that covers them
		{"192.0.2.200/32", ErrAllowlisted},
		{"192.0.2.0/24", ErrAllowlisted},
		{"192.0.2.0/25", nil}, // beside the allowed half, not over it
		{"192.0.2.127/32", nil},
		{"2001:db8:aa:1::1/128", ErrAllowlisted},
		{"2001:db8::/32", ErrAllowlisted},
		{"2001:db8:ab::/48", nil},
		// the host's own and the broker's addresses, and prefixes over them
		{"10.77.0.5/32", ErrAllowlisted},
		{"10.77.0.0/16", ErrAllowlisted},
		{"10.0.0.0/8", ErrAllowlisted},
		{"10.77.0.6/32", nil},
		{"fd77::5/128", ErrAllowlisted},
		{"fd77::/64", ErrAllowlisted},
		{"fd77::6/128", nil},
		// prefix limits: /8 and /32 by default, 0/0 always
		{"0.0.0.0/0", ErrTooBroad},
		{"::/0", ErrTooBroad},
		{"128.0.0.0/1", ErrTooBroad},
		{"198.0.0.0/7", ErrTooBroad},
		{"198.0.0.0/8", nil},
		{"2001:db8::/31", ErrTooBroad},
		{"2a00::/32", nil},
		// ordinary bans
		{"203.0.113.7/32", nil},
		{"198.51.100.0/24", nil},
		{"2001:db8:1::7/128", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			err := g.Check(netip.MustParsePrefix(tt.prefix))
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Check(%s) = %v, want %v", tt.prefix, err, tt.want)
			}
		})
	}
}

func TestGuardLimits(t *testing.T) {
	tests := []struct {
		widest4, widest6 int
		prefix           string
		want             error
	}{
		{16, 48, "198.51.0.0/16", nil},
		{16, 48, "198.50.0.0/15", ErrTooBroad},
		{16, 48, "2001:db8:1::/48", nil},
		{16, 48, "2001:db8::/47", ErrTooBroad},
		{32, 128, "198.51.100.0/31", ErrTooBroad},
		{32, 128, "198.51.100.1/32", nil},
		{32, 128, "2001:db8::1/128", nil},
		{32, 128, "2001:db8::/127", ErrTooBroad},
		{1, 1, "128.0.0.0/1", ErrAllowlisted}, // within the limit, but over 169.254/16
		{1, 1, "0.0.0.0/0", ErrTooBroad},      // a limit of /1 still never lets 0/0 through
		{1, 1, "::/0", ErrTooBroad},
		{1, 1, "8000::/1", ErrAllowlisted}, // over fe80::/10
		{1, 1, "2000::/3", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			err := New(nil, tt.widest4, tt.widest6).Check(netip.MustParsePrefix(tt.prefix))
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("widest /%d /%d: Check(%s) = %v, want %v", tt.widest4, tt.widest6, tt.prefix, err, tt.want)
			}
		})
	}
}

// TestGuardDynamicReplaced: an address the host lost is bannable again,
// and a new one is protected at once.
func TestGuardDynamicReplaced(t *testing.T) {
	g := New(nil, 0, 0)
	a, b := netip.MustParsePrefix("10.77.99.5/32"), netip.MustParsePrefix("10.77.99.6/32")
	if err := g.Check(a); err != nil {
		t.Fatalf("before SetDynamic: %v", err)
	}
	g.SetDynamic([]netip.Prefix{a})
	if err := g.Check(a); !errors.Is(err, ErrAllowlisted) {
		t.Errorf("own address: %v, want allowlisted", err)
	}
	if err := g.Check(netip.MustParsePrefix("10.77.99.0/24")); !errors.Is(err, ErrAllowlisted) {
		t.Errorf("prefix over own address: %v, want allowlisted", err)
	}
	g.SetDynamic([]netip.Prefix{b})
	if err := g.Check(a); err != nil {
		t.Errorf("address no longer own: %v, want nil", err)
	}
}

// TestGuardShared: the shared allowlist protects what it covers, beside
// the host's own addresses, and nothing once replaced.
func TestGuardShared(t *testing.T) {
	g := New(nil, 0, 0)
	g.SetDynamic([]netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")})
	g.SetShared([]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")})
	for _, s := range []string{"198.51.100.7/32", "198.51.0.0/16", "10.0.0.1/32"} {
		if err := g.Check(netip.MustParsePrefix(s)); !errors.Is(err, ErrAllowlisted) {
			t.Errorf("Check(%s) = %v, want allowlisted", s, err)
		}
	}
	g.SetShared(nil)
	if err := g.Check(netip.MustParsePrefix("198.51.100.7/32")); err != nil {
		t.Errorf("after the entry was deleted: %v, want nil", err)
	}
}

// TestGuardConcurrent runs Check against SetDynamic for the race detector.
func TestGuardConcurrent(t *testing.T) {
	g := New(nil, 0, 0)
	p := netip.MustParsePrefix("10.77.99.5/32")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 1000 {
			g.SetDynamic([]netip.Prefix{p})
		}
	}()
	go func() {
		defer wg.Done()
		for range 1000 {
			g.Check(p)
		}
	}()
	wg.Wait()
}

// TestGuardMappedAddress: a v4-mapped IPv6 prefix is the IPv4 address it
// maps; the grammar unmaps, and the guard must not be the weak point if a
// caller does not.
func TestGuardMappedAddress(t *testing.T) {
	g := New(nil, 0, 0)
	for _, s := range []string{"::ffff:127.0.0.1", "::ffff:127.0.0.1/128", "::ffff:169.254.0.1"} {
		p, err := wire.ParsePrefix(s)
		if err != nil {
			t.Fatalf("ParsePrefix(%s): %v", s, err)
		}
		if err := g.Check(p); !errors.Is(err, ErrAllowlisted) {
			t.Errorf("ParsePrefix(%s) = %v, Check: %v, want allowlisted", s, p, err)
		}
	}
}

// TestNewDynamicAddress: the hook hears of the addresses the dynamic
// allowlist gains, not of those it keeps or loses, and Gen moves with it.
func TestNewDynamicAddress(t *testing.T) {
	g := New(nil, 0, 0)
	var heard [][]netip.Prefix
	g.OnNew(func(added []netip.Prefix) { heard = append(heard, added) })
	a, b := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::1/128")
	g.SetDynamic([]netip.Prefix{a})
	g.SetDynamic([]netip.Prefix{a, b})
	g.SetDynamic([]netip.Prefix{b})
	if len(heard) != 2 || !slices.Equal(heard[0], []netip.Prefix{a}) || !slices.Equal(heard[1], []netip.Prefix{b}) {
		t.Errorf("hook heard %v, want [[%v] [%v]]", heard, a, b)
	}
	if g.Gen() != 2 {
		t.Errorf("Gen = %d after two additions, want 2", g.Gen())
	}
	if err := g.Check(netip.MustParsePrefix("2001:db8::/64")); err == nil {
		t.Error("a prefix over the new address passes")
	}
}

// TestNewDynamicLateHook: a hook set late hears at once of the addresses
// held already (they came while nobody listened).
func TestNewDynamicLateHook(t *testing.T) {
	g := New(nil, 0, 0)
	a := netip.MustParsePrefix("192.0.2.1/32")
	g.SetDynamic([]netip.Prefix{a})
	var heard []netip.Prefix
	g.OnNew(func(added []netip.Prefix) { heard = append(heard, added...) })
	if !slices.Equal(heard, []netip.Prefix{a}) {
		t.Errorf("a late hook heard %v, want [%v]", heard, a)
	}
}
