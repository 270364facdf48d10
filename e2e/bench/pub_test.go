package main

import (
	"net/netip"
	"testing"
)

// One address per message is what vallumd's users publish: no newline,
// which vallumd refuses (the vallumd row then measured nothing).
func TestLines(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	if got := string(lines([]netip.Addr{a})); got != "192.0.2.1" {
		t.Errorf("lines(one) = %q, want %q", got, "192.0.2.1")
	}
	if got := string(lines([]netip.Addr{a, b})); got != "192.0.2.1\n2001:db8::1" {
		t.Errorf("lines(two) = %q, want one per line, no newline at the end", got)
	}
}
