package nft

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestRangePrefixes(t *testing.T) {
	tests := []struct {
		first, last string
		want        string
	}{
		{"192.0.2.0", "192.0.2.255", "[192.0.2.0/24]"},
		{"192.0.2.7", "192.0.2.7", "[192.0.2.7/32]"},
		{"192.0.2.1", "192.0.2.6", "[192.0.2.1/32 192.0.2.2/31 192.0.2.4/31 192.0.2.6/32]"},
		{"0.0.0.0", "255.255.255.255", "[0.0.0.0/0]"},
		{"255.255.255.0", "255.255.255.255", "[255.255.255.0/24]"},
		{"2001:db8:1::", "2001:db8:1:ffff:ffff:ffff:ffff:ffff", "[2001:db8:1::/48]"},
		{"192.0.2.9", "192.0.2.8", "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.first+"-"+tt.last, func(t *testing.T) {
			got := fmt.Sprint(rangePrefixes(netip.MustParseAddr(tt.first), netip.MustParseAddr(tt.last)))
			if got != tt.want {
				t.Errorf("rangePrefixes(%s, %s) = %s, want %s", tt.first, tt.last, got, tt.want)
			}
		})
	}
}
