package bridge

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vallum/vallum/internal/guard"
)

// TestGuardDefaultInOptions: a bridge with no guard configured gets the default one;
// a nil *Guard itself allows everything, so Options must never leave it nil.
func TestGuardDefaultInOptions(t *testing.T) {
	o := Options{Lists: []List{{Root: "bl"}}, Broker: "tcp://127.0.0.1:1", ClientID: "x", QoS: 1}
	b, err := New(o, newFake())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.opts.Guard.Check(netip.MustParsePrefix("127.0.0.1/32")); !errors.Is(err, guard.ErrAllowlisted) {
		t.Errorf("default guard: Check(127.0.0.1) = %v, want allowlisted", err)
	}
}
