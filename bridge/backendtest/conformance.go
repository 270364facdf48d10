// Package backendtest is the conformance table every bridge.Backend passes:
// the same adds, deletes, timeouts and refusals, each case against real
// kernel sets in a network namespace of its own.
package backendtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/netnstest"
	"github.com/vallum/vallum/internal/wire"
)

// Factory opens the backend under test inside the namespace ns.
type Factory func(t *testing.T, ns netns.NsHandle) bridge.Backend

const (
	set4 = "vt4"
	set6 = "vt6"
)

type env struct {
	t   *testing.T
	ctx context.Context
	be  bridge.Backend
}

// Run runs the conformance table against backends made by open.
func Run(t *testing.T, open Factory) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := netnstest.New(t)
			be := open(t, ns)
			t.Cleanup(func() { be.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c.run(&env{t: t, ctx: ctx, be: be})
		})
	}
}

var cases = []struct {
	name string
	run  func(e *env)
}{
	{"create missing sets", func(e *env) {
		for _, s := range []bridge.SetSpec{{Name: set4, Family: bridge.IPv4, Create: true}, {Name: set6, Family: bridge.IPv6, Create: true}} {
			info := e.ensure(s)
			if !info.Created || info.Family != s.Family || info.Size > 0 || !info.Comments {
				e.t.Errorf("Ensure(%+v) = %+v, want a created, empty set of that family with comments", s, info)
			}
			if info.MaxElem != 0 && info.MaxElem < bridge.DefaultMaxElem {
				e.t.Errorf("Ensure(%+v) made capacity %d, want at least %d", s, info.MaxElem, bridge.DefaultMaxElem)
			}
			if again := e.ensure(s); again.Created {
				e.t.Errorf("second Ensure(%+v) says it created the set again", s)
			}
		}
	}},
	{"missing set without create", func(e *env) {
		_, err := e.be.Ensure(e.ctx, bridge.SetSpec{Name: set4, Family: bridge.IPv4})
		if !errors.Is(err, bridge.ErrNoSet) {
			e.t.Fatalf("Ensure(no create) = %v, want ErrNoSet", err)
		}
		err = e.be.Apply(e.ctx, set4, []bridge.Op{add("192.0.2.1", -1)})
		if !errors.Is(err, bridge.ErrNoSet) {
			e.t.Fatalf("Apply to a missing set = %v, want ErrNoSet", err)
		}
	}},
	{"ipv4 address and cidr", func(e *env) {
		e.ensure(bridge.SetSpec{Name: set4, Family: bridge.IPv4, Create: true})
		e.apply(set4, add("192.0.2.7", -1), add("198.51.100.0/24", -1))
		e.want(set4, "192.0.2.7/32", "198.51.100.0/24")
	}},
	{"ipv6 address and cidr", func(e *env) {
		e.ensure(bridge.SetSpec{Name: set6, Family: bridge.IPv6, Create: true})
		e.apply(set6, add("2001:db8::7", -1), add("2001:db8:1::/48", 600))
		e.want(set6, "2001:db8::7/128", "2001:db8:1::/48")
	}},
	{"add twice refreshes the timeout", func(e *env) {
		e.ensure(bridge.SetSpec{Name: set4, Family: bridge.IPv4, Create: true})
		e.apply(set4, add("192.0.2.1", 100))
		e.apply(set4, add("192.0.2.1", 1000))
		got := e.list(set4)
		if len(got) != 1 || got[0].Timeout < 900 || got[0].Timeout > 1000 {
			e.t.Fatalf("after add timeout 100 then 1000: %+v, want one entry with 900..1000 s left", got)
		}
	}},
	{"timeout zero is permanent", func(e *env) {
		e.ensure(bridge.SetSpec{Name: set4, Family: bridge.IPv4, Create: true})
		e.apply(set4, add("192.0.2.1", 0), add("192.0.2.2", -1), add("192.0.2.3", 50))
		for _, en := range e.list(set4) {
			perm := en.Prefix.Addr() != netip.MustParseAddr("192.0.2.3")
			if perm != (en.Timeout == 0) || (!perm && (en.Timeout < 40 || en.Timeout > 50)) {
				e.t.Errorf("entry %+v: permanent=%v, want timeout 0 for permanent and 40..50 otherwise", en, perm)
			}
		}
	}},
	{"entry expires", func(e *env) {
		e.ensure(bridge.SetSpec{Name: set4, Family: bridge.IPv4, Create: true})
		e.apply(set4, add("192.0.2.1", 1), add("192.0.2.2", -1))
		deadline := time.Now().Add(10 * time.Second)
		for len(e.list(set4)) != 1 {
			if time.Now().After(deadline) {
				e.t.Fatalf("entry with timeout 1 still there after 10 s: %+v", e.list(set4))
			}
			time.Sleep(100 * time.Millisecond)
		}
		e.want(set4, "192.0.2.2/32")
	}},
	{"del and del of an absent entry", func(e *env) {
		e.ensure(bridge.SetSpec{Name: set4, Family: bridge.IPv4, Create: true})
		e.apply(set4, add("192.0.2.1", -1), add("192.0.2.2", -1))
		e.apply(set4, del("192.0.2.1"), del("192.0.2.99"), del("203.0.113.0/24"))
		e.want(set4, "192.0.2.2/32")
	}},
	{"add then del in one batch", func(e *env) {
		e.ensure(bridge.SetSpec{Name: set4, Family: bridge.IPv4, Create: true})
		e.apply(set4, add("192.0.2.1", -1), del("192.0.2.1"), add("192.0.2.2", -1), del("192.0.2.2"), add("192.0.2.2", 60))
		e.want(set4, "192.0.2.2/32")
	}},
	{"wrong family is refused alone", func(e *env) {
		e.ensure(bridge.SetSpec{Name: set4, Family: bridge.IPv4, Create: true})
		err := e.be.Apply(e.ctx, set4, []bridge.Op{add("192.0.2.1", -1), add("2001:db8::1", -1), add("192.0.2.2", -1)})
		var ae *bridge.ApplyError
		if !errors.As(err, &ae) || len(ae.Failed) != 1 || !errors.Is(err, bridge.ErrFamily) {
			e.t.Fatalf("Apply with a v6 op in a v4 set = %v, want one ApplyError with ErrFamily", err)
		}
		e.want(set4, "192.0.2.1/32", "192.0.2.2/32")
	}},
	{"full set refuses the rest", func(e *env) {
		e.ensure(bridge.SetSpec{Name: set4, Family: bridge.IPv4, Create: true, MaxElem: 4})
		var ops []bridge.Op
		for i := 1; i <= 6; i++ {
			ops = append(ops, add(fmt.Sprintf("192.0.2.%d", i), -1))
		}
		err := e.be.Apply(e.ctx, set4, ops)
		var ae *bridge.ApplyError
		if !errors.As(err, &ae) || len(ae.Failed) != 2 || !errors.Is(err, bridge.ErrSetFull) {
			e.t.Fatalf("Apply of 6 into a set of 4 = %v, want an ApplyError with 2 ErrSetFull", err)
		}
		e.want(set4, "192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32", "192.0.2.4/32")
		e.apply(set4, del("192.0.2.1"), add("192.0.2.5", -1)) // room again after a del
	}},
	{"comments are kept", func(e *env) {
		e.ensure(bridge.SetSpec{Name: set6, Family: bridge.IPv6, Create: true})
		op := add("2001:db8::5", -1)
		op.Comment = "vallum"
		e.apply(set6, op, add("2001:db8::6", -1))
		for _, en := range e.list(set6) {
			want := ""
			if en.Prefix == op.Prefix {
				want = "vallum"
			}
			if en.Comment != want {
				e.t.Errorf("entry %s comment %q, want %q", en.Prefix, en.Comment, want)
			}
		}
	}},
	{"keep leaves an existing entry as it is", func(e *env) {
		for _, c := range []struct {
			set        string
			fam        bridge.Family
			hand, free string
		}{{set4, bridge.IPv4, "192.0.2.1", "192.0.2.2"}, {set6, bridge.IPv6, "2001:db8::1", "2001:db8::2"}} {
			e.ensure(bridge.SetSpec{Name: c.set, Family: c.fam, Create: true})
			e.apply(c.set, add(c.hand, 0)) // made by hand: permanent, no comment
			keep := func(p string) bridge.Op {
				op := add(p, 3)
				op.Comment, op.Keep = "vallum", true
				return op
			}
			err := e.be.Apply(e.ctx, c.set, []bridge.Op{keep(c.hand), keep(c.free)})
			var ae *bridge.ApplyError
			if !errors.As(err, &ae) || len(ae.Failed) != 1 || ae.Failed[0].Op.Prefix.Addr().String() != c.hand || !errors.Is(err, bridge.ErrExists) {
				e.t.Fatalf("Apply(keep %s, keep %s) = %v, want only %s refused with ErrExists", c.hand, c.free, err, c.hand)
			}
			for _, en := range e.list(c.set) {
				hand := en.Prefix.Addr().String() == c.hand
				if hand && (en.Timeout != 0 || en.Comment != "") || !hand && (en.Timeout < 1 || en.Timeout > 3 || en.Comment != "vallum") {
					e.t.Errorf("after keep adds, %+v: want %s permanent without comment, %s with 3 s and comment vallum", en, c.hand, c.free)
				}
			}
		}
	}},
	{"large batch", func(e *env) {
		info := e.ensure(bridge.SetSpec{Name: set4, Family: bridge.IPv4, Create: true})
		const n = 20000
		ops := make([]bridge.Op, n)
		for i := range ops {
			ops[i] = bridge.Op{Action: bridge.Add, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32), Timeout: 3600}
		}
		e.apply(set4, ops...)
		if info = e.info(set4); info.Size != n && info.Size != -1 { // -1: the backend cannot count cheaply
			e.t.Fatalf("after %d adds Info = %+v, want size %d", n, info, n)
		}
		if got := len(e.list(set4)); got != n {
			e.t.Fatalf("List returned %d entries, want %d", got, n)
		}
	}},
	{"calls from several goroutines", func(e *env) {
		// The daemon shares one backend between the bridge's worker and
		// the metrics and health handlers, with no lock of its own: the
		// backend serialises its calls (run this under -race).
		e.ensure(bridge.SetSpec{Name: set4, Family: bridge.IPv4, Create: true})
		const batches = 50
		done := make(chan struct{})
		errs := make(chan error, 2)
		for _, read := range []func() error{
			func() error { _, err := e.be.Info(e.ctx, set4); return err },
			func() error { _, err := e.be.List(e.ctx, set4); return err },
		} {
			go func() {
				for {
					select {
					case <-done:
						errs <- nil
						return
					default:
					}
					if err := read(); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		var want []string
		for i := range batches {
			ops := make([]bridge.Op, 10)
			for j := range ops {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 9, byte(i), byte(j)}), 32)
				ops[j], want = add(p.String(), 3600), append(want, p.String())
			}
			e.apply(set4, ops...)
		}
		close(done)
		for range 2 {
			if err := <-errs; err != nil {
				e.t.Errorf("Info or List beside Apply: %v", err)
			}
		}
		e.want(set4, want...)
	}},
}

func (e *env) ensure(s bridge.SetSpec) bridge.SetInfo {
	e.t.Helper()
	info, err := e.be.Ensure(e.ctx, s)
	if err != nil {
		e.t.Fatalf("Ensure(%+v): %v", s, err)
	}
	return info
}

func (e *env) apply(set string, ops ...bridge.Op) {
	e.t.Helper()
	if err := e.be.Apply(e.ctx, set, ops); err != nil {
		e.t.Fatalf("Apply(%s, %v): %v", set, ops, err)
	}
}

func (e *env) list(set string) []bridge.Entry {
	e.t.Helper()
	l, err := e.be.List(e.ctx, set)
	if err != nil {
		e.t.Fatalf("List(%s): %v", set, err)
	}
	return l
}

func (e *env) info(set string) bridge.SetInfo {
	e.t.Helper()
	i, err := e.be.Info(e.ctx, set)
	if err != nil {
		e.t.Fatalf("Info(%s): %v", set, err)
	}
	return i
}

// want checks that the set holds exactly the given prefixes.
func (e *env) want(set string, prefixes ...string) {
	e.t.Helper()
	got := map[netip.Prefix]bool{}
	for _, en := range e.list(set) {
		got[en.Prefix] = true
	}
	for _, p := range prefixes {
		if !got[netip.MustParsePrefix(p)] {
			e.t.Errorf("set %s lacks %s; has %v", set, p, slices.Collect(maps.Keys(got)))
		}
		delete(got, netip.MustParsePrefix(p))
	}
	if len(got) > 0 {
		e.t.Errorf("set %s has unexpected %v", set, slices.Collect(maps.Keys(got)))
	}
}

func add(p string, timeout wire.Timeout) bridge.Op {
	pr, err := wire.ParsePrefix(p)
	if err != nil {
		panic(err)
	}
	return bridge.Op{Action: bridge.Add, Prefix: pr, Timeout: timeout}
}

func del(p string) bridge.Op {
	op := add(p, -1)
	op.Action, op.Timeout = bridge.Del, wire.DefaultTimeout
	return op
}
