//go:build !vallum_lean

package bridge

import (
	"net/netip"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/vallum/vallum/internal/wire"
)

// TestPresence: a bridge says it is online and synced, with its version,
// backend and the list's size at the sync; a connection that drops
// without a DISCONNECT leaves the will (offline) until the bridge is back;
// a clean stop says offline too.
func TestPresence(t *testing.T) {
	srv, url := startBroker(t, nil)
	got := make(chan wire.HostStatus, 100)
	err := srv.Subscribe(wire.HostFilter, 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		if st, err := wire.DecodeHostStatus(pk.Payload); err != nil {
			t.Errorf("status %q: %v", pk.Payload, err)
		} else {
			got <- st
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"192.0.2.1", "192.0.2.2"} {
		p := wire.StateTopic("bl", netip.MustParsePrefix(a+"/32"))
		if err := srv.Publish(p, wire.EncodeState(wire.State{At: time.Now()}), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	id := "bridge-" + t.Name()
	r := startBridge(t, url, newFake(), func(o *Options) {
		o.Presence = Presence{Version: "v9.9", Backend: "fake"}
	})
	wait := func(what string, ok func(wire.HostStatus) bool) wire.HostStatus {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case st := <-got:
				if ok(st) {
					return st
				}
			case <-deadline:
				t.Fatalf("no status %s within 10 s", what)
			}
		}
	}
	st := wait("online and synced", func(s wire.HostStatus) bool { return s.Online && s.Synced })
	if st.Version != "v9.9" || st.Backend != "fake" || len(st.Lists) != 1 || st.Lists[0] != "bl" ||
		st.Entries["bl"] != 2 || st.LastSync == 0 {
		t.Errorf("status %+v, want version v9.9, backend fake, lists [bl], 2 entries, a last sync", st)
	}

	cl, ok := srv.Clients.Get(id)
	if !ok {
		t.Fatalf("no client %s at the broker", id)
	}
	cl.Stop(nil) // the connection drops: the broker sends the will
	wait("offline (the will)", func(s wire.HostStatus) bool { return !s.Online })
	wait("online again after the reconnection", func(s wire.HostStatus) bool { return s.Online && s.Synced })

	r.stop()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	r.done <- nil // for the cleanup's shutdown
	wait("offline after a clean stop", func(s wire.HostStatus) bool { return !s.Online })
}

// noWills refuses every CONNECT that carries a will, as a broker whose ACL
// predates the hosts' status does.
type noWills struct{ mochi.HookBase }

func (noWills) ID() string { return "no-wills" }
func (noWills) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (noWills) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	return cl.Properties.Will.Flag == 0
}
func (noWills) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// TestPresenceRefusedWill: a broker that refuses the will does not keep
// the bridge from running: it connects without, and syncs.
func TestPresenceRefusedWill(t *testing.T) {
	_, url := startBroker(t, &noWills{})
	r := startBridge(t, url, newFake(), nil)
	r.waitSynced(t, 1)
}
