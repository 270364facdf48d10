//go:build !vallum_lean

package bridge

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestBannedAfterBatch: after a batch, Banned gets the adds the kernel took
// for the lists that ask for it, once for the batch: not the adds of other
// lists, not refused adds, not deletes.
func TestBannedAfterBatch(t *testing.T) {
	var calls [][]netip.Prefix
	o := Options{
		Lists:  []List{{Root: "kill"}, {Root: "keep"}},
		Broker: "tcp://127.0.0.1:1", ClientID: "x", QoS: 1, Create: true,
		KillLists: []string{"kill"},
		Banned:    func(ps []netip.Prefix) { calls = append(calls, slices.Clone(ps)) },
	}
	f := newFake()
	b, err := New(o, f)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, s := range b.app.specs {
		if _, err := f.Ensure(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	b.app.applyBatch(ctx, []item{
		{ops: []setOp{
			{"kill", op(Add, "198.51.100.7/32", 0, CommentState)},
			{"kill6", op(Add, "2001:db8::/48", 0, CommentState)},
			{"keep", op(Add, "203.0.113.1/32", 0, CommentState)},
		}},
		{ops: []setOp{
			{"kill", op(Add, "2001:db8::9/128", 0, CommentState)}, // wrong family: refused
			{"kill", op(Del, "198.51.100.8/32", 0, "")},
		}},
	})
	want := [][]netip.Prefix{{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("2001:db8::/48")}}
	if !slices.EqualFunc(calls, want, slices.Equal) {
		t.Errorf("Banned calls = %v, want %v", calls, want)
	}
	b.app.applyBatch(ctx, []item{{ops: []setOp{{"keep", op(Add, "203.0.113.2/32", 0, CommentState)}}}})
	if len(calls) != 1 {
		t.Errorf("Banned called for a batch of a list that does not ask: %v", calls[1:])
	}
}

func TestCheckKillLists(t *testing.T) {
	lists := []List{{Root: "bl"}, {Root: "site1/scan"}}
	if err := CheckKillLists([]string{"bl", "site1/scan"}, lists); err != nil {
		t.Errorf("CheckKillLists(the lists' roots) = %v", err)
	}
	for _, bad := range []string{"other", "scan", "bl6"} {
		if err := CheckKillLists([]string{"bl", bad}, lists); err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("CheckKillLists(%q) = %v, want an error naming it", bad, err)
		}
	}
}
