package enforce

import (
	"net/netip"
	"slices"
)

// prefixSet answers whether an address falls in one of a batch's prefixes,
// in one map lookup per prefix length the batch holds (a batch of bans is
// mostly single addresses: one lookup).
type prefixSet struct {
	m            map[netip.Prefix]struct{}
	lens4, lens6 []int
}

// newPrefixSet indexes ps (masked, IPv4 unmapped, as the bridge gives them).
func newPrefixSet(ps []netip.Prefix) *prefixSet {
	s := &prefixSet{m: make(map[netip.Prefix]struct{}, len(ps))}
	for _, p := range ps {
		p = p.Masked()
		s.m[p] = struct{}{}
		lens := &s.lens6
		if p.Addr().Is4() {
			lens = &s.lens4
		}
		if !slices.Contains(*lens, p.Bits()) {
			*lens = append(*lens, p.Bits())
		}
	}
	return s
}

// contains reports whether a is in one of the prefixes. The zero Addr (an
// entry of another protocol) is in none.
func (s *prefixSet) contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	lens := s.lens6
	if a.Is4() {
		lens = s.lens4
	}
	for _, n := range lens {
		p, err := a.Prefix(n)
		if err != nil {
			continue
		}
		if _, ok := s.m[p]; ok {
			return true
		}
	}
	return false
}
