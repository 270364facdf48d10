//go:build linux

package nft

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/netnstest"
)

// Has answers as `nft get element` does, in vallum's hash sets and in a
// user's interval set: members yes, others no, an expired element no, the
// other family no; and after the table was deleted and made again with the
// same empty set, no.
func TestHas(t *testing.T) {
	ns := netnstest.New(t)
	nftIn(t, ns, fw4, "-f", "-")
	ctx := context.Background()
	b := openNft(t, ns, "inet fw4")
	defer b.Close()
	for _, s := range []bridge.SetSpec{{Name: "own", Family: bridge.IPv4, Create: true}, {Name: "bl", Family: bridge.IPv4}, {Name: "plain6", Family: bridge.IPv6}} {
		if _, err := b.Ensure(ctx, s); err != nil {
			t.Fatalf("Ensure(%s): %v", s.Name, err)
		}
	}
	nftIn(t, ns, "", "add", "element", "inet", "fw4", "own", "{ 192.0.2.1, 192.0.2.9 timeout 1s }")
	nftIn(t, ns, "", "add", "element", "inet", "fw4", "bl", "{ 198.51.100.0/24 }")
	nftIn(t, ns, "", "add", "element", "inet", "fw4", "plain6", "{ 2001:db8::1 }")
	cases := []struct {
		set, prefix string
		want        bool
	}{
		{"own", "192.0.2.1/32", true},
		{"own", "192.0.2.2/32", false},
		{"own", "2001:db8::1/128", false},
		{"bl", "198.51.100.7/32", true}, // an address inside a range of an interval set
		{"bl", "192.0.2.1/32", false},
		{"plain6", "2001:db8::1/128", true},
		{"plain6", "2001:db8::2/128", false},
	}
	for _, c := range cases {
		got, err := b.Has(ctx, c.set, mustPrefix(c.prefix))
		if err != nil || got != c.want {
			t.Errorf("Has(%s, %s) = %v, %v; want %v", c.set, c.prefix, got, err, c.want)
		}
	}
	if _, err := b.Has(ctx, "own", mustPrefix("192.0.2.0/24")); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Has of a prefix: err = %v, want ErrUnsupported", err)
	}
	if _, err := b.Has(ctx, "nope", mustPrefix("192.0.2.1/32")); !errors.Is(err, bridge.ErrNoSet) {
		t.Errorf("missing set: err = %v, want ErrNoSet", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got, err := b.Has(ctx, "own", mustPrefix("192.0.2.9/32"))
		if err == nil && !got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an element with a 1 s timeout, 10 s later: Has = %v, %v", got, err)
		}
	}

	nftIn(t, ns, "delete table inet fw4\n"+fw4, "-f", "-")
	if got, err := b.Has(ctx, "plain6", mustPrefix("2001:db8::1/128")); got || err != nil {
		t.Errorf("after the table was made again: Has = %v, %v; want false, nil", got, err)
	}
}
