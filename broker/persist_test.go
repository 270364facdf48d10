package broker

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestRestartKeepsState: retained bans and the QoS 1 messages queued for
// an offline persistent session survive a broker restart.
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir, Logger: testLogger(t)}
	b1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runBroker(t, b1)
	u := url(t, b1, KindTCP)

	host := mustDial(t, u, withSession("host1"))
	host.sub(t, "blacklist/#", 1)
	host.Disconnect(50) // offline from now on: the broker queues for it

	pub := mustDial(t, u)
	const n = 20
	var want []string
	for i := range n {
		p := "192.0.2." + strconv.Itoa(i)
		pub.pub(t, "blacklist/add", 1, false, p)
		want = append(want, p)
	}
	pub.pub(t, "blacklist/ban/198.51.100.1", 1, true, `{"at":1}`)
	pub.Disconnect(50)
	stop1()

	b2 := start(t, o)
	u = url(t, b2, KindTCP)
	fresh := mustDial(t, u)
	fresh.sub(t, "blacklist/ban/#", 1)
	if m := fresh.next(t, 5*time.Second); m.topic != "blacklist/ban/198.51.100.1" || !m.retain {
		t.Errorf("after restart a new subscriber got %+v, want the retained ban", m)
	}

	host = mustDial(t, u, withSession("host1"))
	var got []string
	for len(got) < n+1 { // the queued events, and the state published while offline
		m := host.next(t, 5*time.Second)
		if m.topic == "blacklist/add" {
			got = append(got, m.payload)
		} else {
			got = append(got, "state:"+m.topic)
		}
	}
	want = append(want, "state:blacklist/ban/198.51.100.1")
	slices.Sort(got) // mochi redelivers a session's queue out of order
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("persistent session after restart got %q, want %q", got, want)
	}
	select {
	case m := <-host.msgs:
		t.Errorf("unexpected extra message after restart: %+v", m)
	case <-time.After(200 * time.Millisecond):
	}
}
