package bridge

import (
	"net/netip"
	"strings"
	"testing"
)

// TestMarkerForgery: markers a third party can guess (the sync's number
// alone, an earlier sync's markers) neither open nor close the window;
// only the current sync's own markers do.
func TestMarkerForgery(t *testing.T) {
	var s syncer
	old, _, _, _, _ := s.begin([]string{"blacklist"})
	tag, aSeen, bSeen, _, _ := s.begin([]string{"blacklist"})
	if tag == old || !strings.HasPrefix(tag, "2-") {
		t.Fatalf("tags %q then %q: want a new number and nonce per sync", old, tag)
	}
	for _, forged := range []string{"A2", "A" + old, "A2-", "A2-" + strings.Repeat("0", 24)} {
		if s.marker(forged) != nil || closed(aSeen) {
			t.Fatalf("forged marker %q opened the window", forged)
		}
	}
	s.marker("A" + tag)
	if !closed(aSeen) {
		t.Fatal("the sync's own A did not open the window")
	}
	s.record("blacklist", netip.MustParsePrefix("192.0.2.1/32"), 1, true, true)
	for _, forged := range []string{"B2", "B" + old, "B" + tag[:len(tag)-1]} {
		if s.marker(forged) != nil || closed(bSeen) {
			t.Fatalf("forged marker %q closed the window", forged)
		}
	}
	res := s.marker("B" + tag)
	if res == nil || res.present["blacklist"].len() != 1 {
		t.Fatalf("the sync's own B: result %+v, want the window with one ban", res)
	}
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
