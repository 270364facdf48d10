package bridge

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/vallum/vallum/internal/guard"
)

func prefixes(s ...string) []netip.Prefix {
	p := make([]netip.Prefix, len(s))
	for i := range s {
		p[i] = netip.MustParsePrefix(s[i])
	}
	return p
}

// TestOwnAddressLiftsBans: bans applied before the host had an address
// (here the guard's address source, as guard.Watch feeds it) are lifted
// when it gets it, by event or by state, a prefix that covers it too;
// entries made by hand and bans of other addresses stay; each lift counts
// as a refused ban, and later bans of the address are refused.
func TestOwnAddressLiftsBans(t *testing.T) {
	_, url := startBroker(t, nil)
	f := newFake()
	f.create("bl", IPv4)
	f.create("bl6", IPv6)
	f.put("bl", IPv4, "198.51.100.4/30", "") // by hand
	g := guard.New(nil, 0, 0)
	r := startBridge(t, url, f, func(o *Options) { o.Guard = g })
	r.waitSynced(t, 1)
	pub := publisher(t, url)
	publish(t, pub, "bl/add", false, "198.51.100.5\n198.51.100.0/28\n203.0.113.1")
	publish(t, pub, "bl/ban/2001:db8::7", true, statePayload())
	wantMembers(t, f, "bl", "198.51.100.0/28", "198.51.100.4/30", "198.51.100.5", "203.0.113.1")
	wantMembers(t, f, "bl6", "2001:db8::7")

	g.SetDynamic(prefixes("198.51.100.5/32", "2001:db8::7/128"))
	wantMembers(t, f, "bl", "198.51.100.4/30", "203.0.113.1")
	wantMembers(t, f, "bl6")
	if got := r.b.stats.Snapshot().Refused["allowlisted"]; got != 3 {
		t.Errorf("refused allowlisted = %d, want 3 (the bans lifted)", got)
	}

	publish(t, pub, "bl/add", false, "198.51.100.5\n203.0.113.2")
	wantMembers(t, f, "bl", "198.51.100.4/30", "203.0.113.1", "203.0.113.2")
	if got := r.b.stats.Snapshot().Refused["allowlisted"]; got != 4 {
		t.Errorf("refused allowlisted = %d, want 4", got)
	}
}

// TestOwnAddressRace: a ban checked just before the guard learnt the
// address it covers reaches the worker after it learnt it, before or
// after the lift: either way it is not left in the kernel set.
func TestOwnAddressRace(t *testing.T) {
	for _, after := range []bool{false, true} {
		f := newFake()
		g := guard.New(nil, 0, 0)
		b, err := New(Options{Lists: []List{{Root: "bl"}}, Broker: "tcp://127.0.0.1:1", ClientID: "race", Create: true, Guard: g,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, f)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if _, err := b.app.ensureSets(ctx); err != nil {
			t.Fatal(err)
		}
		b.app.loadOwned(ctx)
		var lifts []item
		g.OnNew(func(added []netip.Prefix) { lifts = append(lifts, item{own: added}) })

		gen := g.Gen() // as onMessage: before decode checks the ban
		ban := b.dec.decode("bl/add", []byte("198.51.100.5\n203.0.113.1"), false)
		ban.gen = gen
		g.SetDynamic(prefixes("198.51.100.5/32")) // the address watch, meanwhile
		if len(lifts) != 1 {
			t.Fatalf("guard told the bridge of %d changes, want 1", len(lifts))
		}
		if after { // the ban queued after the lift: checked again
			b.app.applyBatch(ctx, lifts)
			b.app.applyBatch(ctx, []item{ban})
		} else { // before it: the lift removes it
			b.app.applyBatch(ctx, []item{ban})
			b.app.applyBatch(ctx, lifts)
		}
		if got := f.members("bl"); len(got) != 1 || got[0] != "203.0.113.1" {
			t.Errorf("ban queued after the lift %v: set holds %v, want only 203.0.113.1", after, got)
		}
		if got := b.stats.Snapshot().Refused["allowlisted"]; got != 1 {
			t.Errorf("ban queued after the lift %v: refused allowlisted = %d, want 1", after, got)
		}
	}
}
