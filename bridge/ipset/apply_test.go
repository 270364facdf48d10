package ipset

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"github.com/vallum/vallum/bridge"
)

// fakeBackend returns a backend on a fake kernel holding the set "bl"
// (hash:net, inet, timeouts and comments) of capacity maxElem.
func fakeBackend(t *testing.T, maxElem uint32) (*Backend, *fakeKernel) {
	t.Helper()
	k := newFakeKernel()
	b := newBackend(k, nil)
	info, err := b.Ensure(context.Background(), bridge.SetSpec{Name: "bl", Family: bridge.IPv4, Create: true, MaxElem: maxElem})
	if err != nil || !info.Created {
		t.Fatalf("Ensure on the fake kernel = %+v, %v", info, err)
	}
	return b, k
}

func hosts(from, n int) []bridge.Op {
	ops := make([]bridge.Op, n)
	for i := range ops {
		a := netip.AddrFrom4([4]byte{10, byte((from + i) >> 16), byte((from + i) >> 8), byte(from + i)})
		ops[i] = bridge.Op{Action: bridge.Add, Prefix: netip.PrefixFrom(a, 32), Timeout: 60}
	}
	return ops
}

func TestApplyBatches(t *testing.T) {
	b, k := fakeBackend(t, 0)
	if err := b.Apply(context.Background(), "bl", hosts(0, 10000)); err != nil {
		t.Fatalf("Apply(10000 adds) = %v", err)
	}
	if n := len(k.sets["bl"].entries); n != 10000 {
		t.Errorf("set holds %d entries, want 10000", n)
	}
	if len(k.requests) > 8 {
		t.Errorf("10000 adds took %d messages %v, want a few", len(k.requests), k.requests)
	}
}

func TestApplyFullSetRetriesTheRest(t *testing.T) {
	b, k := fakeBackend(t, 100)
	ops := hosts(0, 150)
	ops = append(ops, bridge.Op{Action: bridge.Del, Prefix: ops[0].Prefix}, hosts(1000, 1)[0])
	err := b.Apply(context.Background(), "bl", ops)
	var ae *bridge.ApplyError
	if !errors.As(err, &ae) || len(ae.Failed) != 50 || !errors.Is(err, bridge.ErrSetFull) {
		t.Fatalf("Apply(150 adds into 100) = %v, want 50 refused with ErrSetFull", err)
	}
	for i, f := range ae.Failed {
		if f.Op != ops[100+i] {
			t.Fatalf("refusal %d is %v, want %v (batch order)", i, f.Op, ops[100+i])
		}
	}
	s := k.sets["bl"]
	if _, ok := s.entries[ops[len(ops)-1].Prefix]; !ok || len(s.entries) != 100 {
		t.Errorf("after the del, the last add is missing or the set has %d entries, want it in and 100", len(s.entries))
	}
	if len(k.requests) > 60 {
		t.Errorf("%d messages for 50 refusals, want about one each", len(k.requests))
	}
}

func TestApplyKeepsOrderAcrossActions(t *testing.T) {
	b, k := fakeBackend(t, 0)
	a := hosts(0, 1)[0]
	d := bridge.Op{Action: bridge.Del, Prefix: a.Prefix}
	if err := b.Apply(context.Background(), "bl", []bridge.Op{a, a, d, a, d}); err != nil {
		t.Fatalf("Apply = %v", err)
	}
	if got, want := k.requests, []int{2, 1, 1, 1}; !slices.Equal(got, want) {
		t.Errorf("messages carried %v entries, want %v", got, want)
	}
	if len(k.sets["bl"].entries) != 0 {
		t.Errorf("add, add, del, add, del left %v", k.sets["bl"].entries)
	}
}

func TestApplyPrecheck(t *testing.T) {
	b, k := fakeBackend(t, 0)
	k.sets["hosts"] = &fakeSet{h: header{name: "hosts", typ: "hash:ip", family: nfprotoIPv4, maxElem: 10}, entries: map[netip.Prefix]bridge.Entry{}}
	tests := []struct {
		set  string
		op   bridge.Op
		want error
	}{
		{"bl", op(bridge.Add, "2001:db8::1/128", -1, ""), bridge.ErrFamily},
		{"hosts", op(bridge.Add, "192.0.2.0/24", -1, ""), bridge.ErrSetType},
		{"hosts", op(bridge.Del, "192.0.2.0/24", -1, ""), bridge.ErrSetType},
	}
	for _, tt := range tests {
		t.Run(tt.op.String(), func(t *testing.T) {
			before := len(k.requests)
			good := op(bridge.Add, "192.0.2.9/32", -1, "")
			err := b.Apply(context.Background(), tt.set, []bridge.Op{tt.op, good})
			var ae *bridge.ApplyError
			if !errors.As(err, &ae) || len(ae.Failed) != 1 || ae.Failed[0].Op != tt.op || !errors.Is(err, tt.want) {
				t.Errorf("Apply(%v) = %v, want it refused alone with %v", tt.op, err, tt.want)
			}
			if got := k.requests[before:]; !slices.Equal(got, []int{1}) {
				t.Errorf("messages sent %v, want one carrying only the good op", got)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	b, k := fakeBackend(t, 0)
	ctx := context.Background()
	if err := b.Apply(ctx, "nope", hosts(0, 1)); !errors.Is(err, bridge.ErrNoSet) {
		t.Errorf("Apply to a missing set = %v, want ErrNoSet", err)
	}
	delete(k.sets, "bl") // destroyed behind the backend's back
	if err := b.Apply(ctx, "bl", hosts(0, 1)); !errors.Is(err, bridge.ErrNoSet) {
		t.Errorf("Apply to a destroyed set = %v, want ErrNoSet", err)
	}
	b, k = fakeBackend(t, 0)
	k.fail = &kernelError{Code: int(syscall.EPERM)}
	var ae *bridge.ApplyError
	if err := b.Apply(ctx, "bl", hosts(0, 3)); err == nil || errors.As(err, &ae) || !errors.Is(err, k.fail) {
		t.Errorf("Apply when the kernel refuses the request = %v, want that error, not an ApplyError", err)
	}
	k.fail = nil
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Apply(cctx, "bl", hosts(0, 3)); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestEnsureAndList(t *testing.T) {
	b, k := fakeBackend(t, 0)
	ctx := context.Background()
	if h := k.sets["bl"].h; h.maxElem != bridge.DefaultMaxElem || !h.timeout || !h.comments || h.typ != "hash:net" {
		t.Errorf("created set %+v, want hash:net, maxelem %d, timeout, comment", h, bridge.DefaultMaxElem)
	}
	k.sets["ports"] = &fakeSet{h: header{name: "ports", typ: "bitmap:port", family: nfprotoIPv4}}
	if _, err := b.Ensure(ctx, bridge.SetSpec{Name: "ports", Family: bridge.IPv4, Create: true}); !errors.Is(err, bridge.ErrSetType) {
		t.Errorf("Ensure(bitmap:port) = %v, want ErrSetType", err)
	}
	if _, err := b.Ensure(ctx, bridge.SetSpec{Name: "bl", Family: bridge.IPv6}); !errors.Is(err, bridge.ErrFamily) {
		t.Errorf("Ensure(inet set as inet6) = %v, want ErrFamily", err)
	}
	if _, err := b.Ensure(ctx, bridge.SetSpec{Name: "bl6", Family: bridge.IPv6}); !errors.Is(err, bridge.ErrNoSet) {
		t.Errorf("Ensure(missing, no create) = %v, want ErrNoSet", err)
	}
	want := []bridge.Op{op(bridge.Add, "192.0.2.1/32", 30, "vallum"), op(bridge.Add, "198.51.100.0/24", 0, "")}
	if err := b.Apply(ctx, "bl", want); err != nil {
		t.Fatalf("Apply = %v", err)
	}
	got, err := b.List(ctx, "bl")
	if err != nil || len(got) != 2 || got[0] != (bridge.Entry{Prefix: want[0].Prefix, Timeout: 30, Comment: "vallum"}) || got[1].Prefix != want[1].Prefix {
		t.Errorf("List = %+v, %v; want %v", got, err, want)
	}
	if info, err := b.Info(ctx, "bl"); err != nil || info.Size != 2 {
		t.Errorf("Info = %+v, %v; want size 2", info, err)
	}
	if b.Close(); !k.closed {
		t.Error("Close did not close the socket")
	}
}
