package backends

import (
	"errors"
	"log/slog"
	"slices"
	"testing"
)

func TestChoose(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		s    system
		want string
		why  string
	}{
		{"an ipset of the lists exists", system{ipset: true, ipsetSet: "bl"}, "ipset", "set bl exists"},
		{"an ipset exists beside fw4", system{ipset: true, ipsetSet: "bl", fw4: true}, "ipset", "set bl exists"},
		{"OpenWrt fw4", system{ipset: true, fw4: true}, "nft", "OpenWrt fw4"},
		{"inet table", system{ipset: true, inetTable: "filter"}, "nft", "nftables table inet filter exists"},
		{"iptables-nft: ip tables only", system{ipset: true}, "ipset", "no native nftables firewall (no inet table)"},
		{"no nftables", system{ipset: true, nftErr: boom}, "ipset", "no nftables: boom"},
		{"tables unreadable", system{ipset: true, listErr: boom}, "ipset", "cannot list nftables tables: boom"},
		{"no ipset, no nftables firewall", system{}, "nft", "no native nftables firewall (no inet table)"},
		{"no ipset, no nftables", system{nftErr: boom}, "nft", "no nftables: boom"},
	}
	for _, tt := range tests {
		got, why := choose(tt.s)
		if got != tt.want || why != tt.why {
			t.Errorf("%s: choose = %s (%s), want %s (%s)", tt.name, got, why, tt.want, tt.why)
		}
	}
}

func TestNames(t *testing.T) {
	if got := Names(); got != "auto, dryrun, ipset, nft" {
		t.Errorf("Names() = %q", got)
	}
	if Known("iptables") || !Known("dryrun") {
		t.Error("Known is wrong")
	}
}

// TestOpen: a known name opens (dryrun: the one that touches no kernel),
// an unknown one is refused; names stay sorted for the error message.
func TestOpen(t *testing.T) {
	be, err := Open("dryrun", Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open(dryrun): %v", err)
	}
	be.Close()
	if _, err := Open("iptables", Options{}); err == nil || Known("iptables") {
		t.Error("Open(iptables) succeeded or Known says it exists")
	}
	if !slices.IsSorted(names) {
		t.Errorf("names not sorted: %q", names)
	}
}
