package bridge

import (
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// A shared ban never touches an entry a person added by hand: not before
// vallum starts, not while it runs. Its own entries are still refreshed
// and removed.
func TestHandMadeEntriesAreNeverTouched(t *testing.T) {
	_, url := startBroker(t, nil)
	f := newFake()
	f.put("bl", IPv4, "203.0.113.60/32", "") // before the start: permanent, no comment
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	f.put("bl", IPv4, "203.0.113.61/32", "") // while it runs
	pub := publisher(t, url)
	fence := 0
	settle := func() { // everything published before is applied
		fence++
		a := "192.0.2." + string(rune('0'+fence))
		publish(t, pub, "bl/add", false, a)
		eventually(t, func() bool { _, ok := f.entry("bl", a+"/32"); return ok }, "fence %s", a)
	}
	for _, a := range []string{"203.0.113.60", "203.0.113.61"} {
		st := wire.State{At: time.Now(), Expires: time.Now().Add(3 * time.Second), Reason: "shared"}
		publish(t, pub, "bl/ban/"+a, true, string(wire.EncodeState(st)))
		publish(t, pub, "bl/add", false, a+" timeout 3")
	}
	publish(t, pub, "bl/add", false, "192.0.2.200 timeout 100")
	settle()
	publish(t, pub, "bl/add", false, "192.0.2.200 timeout 200") // its own: refreshed
	settle()
	wantHandMade := func(when string) {
		t.Helper()
		for _, a := range []string{"203.0.113.60/32", "203.0.113.61/32"} {
			if e, ok := f.entry("bl", a); !ok || e.Timeout != 0 || e.Comment != "" {
				t.Fatalf("%s: hand-made %s = %+v (present %v), want it permanent and without comment", when, a, e, ok)
			}
		}
	}
	wantHandMade("after a shared ban")
	if e, _ := f.entry("bl", "192.0.2.200/32"); e.Timeout != 200 {
		t.Errorf("vallum's own entry = %+v, want its timeout refreshed to 200", e)
	}
	if got := r.b.stats.Snapshot().Refused["hand_made"]; got < 2 {
		t.Errorf("refused hand_made = %d, want at least 2", got)
	}

	for _, a := range []string{"203.0.113.60", "203.0.113.61"} {
		publish(t, pub, "bl/del", false, a)    // legacy del
		publish(t, pub, "bl/ban/"+a, true, "") // unban
	}
	publish(t, pub, "bl/del", false, "192.0.2.200") // its own: removed
	settle()
	wantHandMade("after a del and an unban")
	if _, ok := f.entry("bl", "192.0.2.200/32"); ok {
		t.Error("vallum's own entry is still there after its del")
	}
	if err := r.b.Resync(t.Context()); err != nil { // a sync keeps them too
		t.Fatal(err)
	}
	r.waitSynced(t, 2)
	wantHandMade("after a sync")
}
