package bridge

import (
	"context"
	"net/netip"
	"slices"
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
	for _, s := range b.specs {
		if _, err := f.Ensure(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	b.applyBatch(ctx, []item{
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
	b.applyBatch(ctx, []item{{ops: []setOp{{"keep", op(Add, "203.0.113.2/32", 0, CommentState)}}}})
	if len(calls) != 1 {
		t.Errorf("Banned called for a batch of a list that does not ask: %v", calls[1:])
	}
}

func TestKillListsMustBeLists(t *testing.T) {
	o := Options{Lists: []List{{Root: "bl"}}, Broker: "tcp://127.0.0.1:1", ClientID: "x", QoS: 1, KillLists: []string{"other"}}
	if _, err := New(o, newFake()); err == nil {
		t.Error("New accepted kill connections for a list it does not have")
	}
}
