// Package guard decides which bans may reach the kernel: never the
// built-in ranges (loopback, link-local, ...), a configured allowlist, this
// host's own addresses or the broker's, nor a prefix broader than the
// limits. The bridge, the broker's keeper and `vallum ban` all ask it.
package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Refusal reasons, as they appear in logs and in the refused counter.
var (
	ErrAllowlisted = errors.New("covers an allowlisted address")
	ErrTooBroad    = errors.New("prefix broader than the configured limit")
)

// Default limits on how broad a banned prefix may be.
const (
	DefaultWidest4 = 8
	DefaultWidest6 = 32
)

// builtinAllow is never banned, whatever the configuration says: loopback,
// link-local, multicast, unspecified and the v4 limited broadcast.
// Parsed in a loop: nine MustParsePrefix calls cost a kilobyte more on the
// router builds.
var builtinAllow = mustPrefixes("127.0.0.0/8", "0.0.0.0/32", "169.254.0.0/16", "224.0.0.0/4",
	"255.255.255.255/32", "::1/128", "::/128", "fe80::/10", "ff00::/8")

func mustPrefixes(s ...string) []netip.Prefix {
	p := make([]netip.Prefix, len(s))
	for i := range s {
		p[i] = netip.MustParsePrefix(s[i])
	}
	return p
}

// Guard decides whether a ban may reach the kernel. Deletes always pass:
// removing an address can never lock anybody out.
type Guard struct {
	Widest4 int // broadest IPv4 prefix length allowed; 0: DefaultWidest4
	Widest6 int // broadest IPv6 prefix length allowed; 0: DefaultWidest6

	mu      sync.RWMutex
	static  []netip.Prefix // built-in plus configured
	dynamic []netip.Prefix // the host's own addresses, the broker's
	shared  []netip.Prefix // the fleet's allowlist, vallum/allow/ (see SetShared)

	gen   atomic.Uint64              // bumped when dynamic gains an address (see Gen)
	onNew func(added []netip.Prefix) // see OnNew; under mu
}

// New returns a Guard that allows the built-in ranges and allow.
func New(allow []netip.Prefix, widest4, widest6 int) *Guard {
	g := &Guard{Widest4: widest4, Widest6: widest6}
	g.static = append(append(g.static, builtinAllow...), allow...)
	return g
}

// SetDynamic replaces the allowlisted addresses that change at run time,
// such as the host's interface addresses and the broker's address. The
// addresses it did not hold before go to the OnNew hook, after Gen moved.
func (g *Guard) SetDynamic(addrs []netip.Prefix) {
	g.mu.Lock()
	var added []netip.Prefix
next:
	for _, a := range addrs {
		for _, b := range g.dynamic { // a few addresses: a loop, not a map
			if a == b {
				continue next
			}
		}
		added = append(added, a)
	}
	g.dynamic = addrs
	hook := g.onNew
	g.mu.Unlock()
	if len(added) == 0 {
		return
	}
	g.gen.Add(1) // after the list: whoever reads the new Gen checks against it
	if hook != nil {
		hook(added)
	}
}

// Gen counts the changes of the dynamic allowlist that added an address.
// A ban checked before the address came may still be on its way to the
// kernel when it comes: whoever checks a ban notes Gen before the check,
// and checks it again when Gen has moved by the time the ban is applied.
func (g *Guard) Gen() uint64 {
	if g == nil {
		return 0
	}
	return g.gen.Load()
}

// OnNew sets the function told of every address the dynamic allowlist
// gains (nil: nobody), so that the bans applied before it came can be
// lifted: at once of those it holds (if any), then on the goroutine that
// calls SetDynamic.
func (g *Guard) OnNew(f func(added []netip.Prefix)) {
	g.mu.Lock()
	g.onNew = f
	now := g.dynamic
	g.mu.Unlock()
	if f != nil && len(now) > 0 {
		f(now)
	}
}

// SetShared replaces the fleet's shared allowlist: the entries an admin
// keeps on the broker (wire.AllowPrefix), which change at run time.
func (g *Guard) SetShared(allow []netip.Prefix) {
	g.mu.Lock()
	g.shared = allow
	g.mu.Unlock()
}

// Check returns nil if p may be banned, or why not.
func (g *Guard) Check(p netip.Prefix) error {
	if g == nil {
		return nil
	}
	widest := g.Widest4
	if widest == 0 {
		widest = DefaultWidest4
	}
	if !p.Addr().Is4() {
		if widest = g.Widest6; widest == 0 {
			widest = DefaultWidest6
		}
	}
	if p.Bits() < widest || p.Bits() == 0 {
		return fmt.Errorf("%w: /%d, limit /%d", ErrTooBroad, p.Bits(), widest)
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, list := range [][]netip.Prefix{g.static, g.dynamic, g.shared} {
		for _, a := range list {
			if a.Overlaps(p) {
				return fmt.Errorf("%w %s", ErrAllowlisted, a)
			}
		}
	}
	return nil
}
