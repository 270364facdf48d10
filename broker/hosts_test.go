package broker

import (
	"maps"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestAttackHostStatus: a host writes its own status (retained, and as its
// will), and cannot write another host's: not by a publish, not by a
// will, not as a reporter; nor can it read the statuses. What an admin
// reads at the end is each host's own status, and the offline will of the
// host that vanished.
func TestAttackHostStatus(t *testing.T) {
	if !webBuilt {
		t.Skip("the router builds have no hosts' status: a host may not write it there")
	}
	b, u, logs := fleet(t, Limits{})
	on, off := `{"online":true,"synced":true}`, `{"online":false}`
	withWill := func(topic, payload string) clientOpt {
		return func(o *paho.ClientOptions) { o.SetWill(topic, payload, 1, true) }
	}

	victim := mustDial(t, u, withUser("edge1", "edge1"), withID("vallum-victim"), withWill("vallum/hosts/vallum-victim", off))
	victim.pub(t, "vallum/hosts/vallum-victim", 1, true, on)

	// Another host: its will on the victim's status refuses the CONNECT.
	if _, err := dial(t, u, withUser("edge2", "edge2"), withID("vallum-evil"), withWill("vallum/hosts/vallum-victim", off)); err == nil {
		t.Error("edge2 connected with a will on vallum-victim's status, want refused")
	}
	wantRefusal(t, b, logs, refWill, "user=edge2", "topic=vallum/hosts/vallum-victim")
	// Its publish is refused (MQTT 3.1.1: mochi drops the connection).
	evil := mustDial(t, u, withUser("edge2", "edge2"), withID("vallum-evil"), withWill("vallum/hosts/vallum-evil", off))
	evil.Publish("vallum/hosts/vallum-victim", 0, true, off)
	wantRefusal(t, b, logs, refPublish, "user=edge2", "topic=vallum/hosts/vallum-victim")
	for _, f := range []string{"vallum/hosts/vallum-victim", "vallum/hosts/+"} {
		tok := evil.Subscribe(f, 1, nil)
		if err := wait(t, tok, "subscribe "+f); err == nil && tok.(*paho.SubscribeToken).Result()[f] < 0x80 {
			t.Errorf("host edge2 may read %s, want refused", f)
		}
	}
	// A reporter has no status.
	rep := mustDial(t, u, withUser("rep", "rep"), withID("vallum-victim2"))
	rep.Publish("vallum/hosts/vallum-victim2", 0, true, off)
	rep.Publish("vallum/hosts/vallum-victim", 0, true, off)

	// A junk status of the host's own is refused too.
	own := mustDial(t, u, withUser("edge2", "edge2"), withID("vallum-junk"))
	own.Publish("vallum/hosts/vallum-junk", 0, true, "not json")
	wantRefusal(t, b, logs, refState, "user=edge2", "topic=vallum/hosts/vallum-junk")

	// edge2 vanishes without a DISCONNECT: its will marks it offline.
	if cl, ok := b.srv.Clients.Get("vallum-evil"); ok {
		cl.Stop(nil) // as a dropped connection: the will is sent
	}
	admin := mustDial(t, u, withUser("admin", "admin"))
	want := map[string]string{"vallum/hosts/vallum-victim": on, "vallum/hosts/vallum-evil": off}
	var got map[string]string
	for range 50 { // the will is published as the connection closes
		if got = drain(t, admin, "vallum/hosts/+"); maps.Equal(got, want) {
			break
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("retained statuses %v, want %v", got, want)
	}
}
