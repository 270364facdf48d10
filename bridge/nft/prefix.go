package nft

import (
	"math/bits"
	"net/netip"
)

// lastAddr is the highest address of a's family.
func lastAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var b [16]byte
	for i := range b {
		b[i] = 0xff
	}
	return netip.AddrFrom16(b)
}

// lastOf is the highest address in p.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// rangePrefixes returns the fewest prefixes that cover first..last
// (inclusive), so a range merged by hand lists as prefixes still.
func rangePrefixes(first, last netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for first.IsValid() && !last.Less(first) {
		n := first.BitLen()
		// Grow the prefix while first stays its network address and its
		// last address stays within the range.
		b := n - trailingZeros(first)
		for ; b < n; b++ {
			if !last.Less(lastOf(netip.PrefixFrom(first, b))) {
				break
			}
		}
		p := netip.PrefixFrom(first, b)
		out = append(out, p)
		end := lastOf(p)
		if end == lastAddr(first) {
			break
		}
		first = end.Next()
	}
	return out
}

// trailingZeros counts the zero bits at the low end of a (its bit length
// for the zero address).
func trailingZeros(a netip.Addr) int {
	b := a.AsSlice()
	n := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return n + bits.TrailingZeros8(b[i])
		}
		n += 8
	}
	return n
}
