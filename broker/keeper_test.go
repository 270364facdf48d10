package broker

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/keeper"
	"github.com/vallum/vallum/internal/wire"
)

func decode(t *testing.T, m msg) wire.State {
	t.Helper()
	s, err := wire.DecodeState([]byte(m.payload))
	if err != nil {
		t.Fatalf("state on %s: %v", m.topic, err)
	}
	return s
}

// states collects what arrives on a state subscription until a sync
// marker, which the same publisher sends last.
func (c *client) states(t *testing.T) map[string][]string {
	t.Helper()
	return c.statesUntil(t, "vallum/sync/test")
}

// statesUntil collects what arrives on a state subscription until a
// message on last, which the keeper publishes after the others.
func (c *client) statesUntil(t *testing.T, last string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for {
		m := c.next(t, 5*time.Second)
		if m.topic == last {
			return out
		}
		out[m.topic] = append(out[m.topic], m.payload)
	}
}

func TestKeeperEvents(t *testing.T) {
	b := start(t, Options{Listeners: []Listener{local(KindTCP)}, Lists: []string{"blacklist", "site1/blacklist"}})
	u := url(t, b, KindTCP)
	watch := mustDial(t, u)
	watch.sub(t, "+/ban/#", 1)
	watch.sub(t, "site1/blacklist/ban/#", 1)
	watch.sub(t, "vallum/sync/#", 1)
	pub := mustDial(t, u)

	before := time.Now()
	pub.pub(t, "blacklist/add", 1, false, "192.0.2.1 timeout 2\n2001:db8::/64\nbogus\n0.0.0.0/0\n127.0.0.1\n192.0.2.3 timeout 0") // 0/0 and loopback never become state
	pub.pub(t, "site1/blacklist", 1, false, "198.51.100.7 timeout 3600")
	pub.pub(t, "vallum/sync/test", 1, false, "")
	got := watch.states(t)
	if len(got) != 4 {
		t.Fatalf("states after legacy adds: %q, want 4 topics", got)
	}
	s := decode(t, msg{topic: "blacklist/ban/192.0.2.1", payload: got["blacklist/ban/192.0.2.1"][0]})
	if life := s.Expires.Sub(s.At); s.Origin != "keeper" || life <= 0 || life > 3*time.Second || s.At.Before(before.Truncate(time.Millisecond)) {
		t.Errorf("state of 192.0.2.1 = %+v, want origin keeper, expiry in about 2 s", s)
	}
	for _, topic := range []string{"blacklist/ban/2001:db8::/64", "blacklist/ban/192.0.2.3"} {
		if s := decode(t, msg{topic: topic, payload: got[topic][0]}); !s.Expires.IsZero() {
			t.Errorf("%s: expires %v, want permanent", topic, s.Expires)
		}
	}
	if s := decode(t, msg{topic: "site1/blacklist/ban/198.51.100.7", payload: got["site1/blacklist/ban/198.51.100.7"][0]}); s.Expires.Sub(s.At) < 3590*time.Second {
		t.Errorf("site1 state expires %v, want in an hour", s.Expires)
	}

	// A repeated add and a state that already says the same write nothing;
	// a del clears the state.
	st := wire.EncodeState(wire.State{At: time.Now(), Expires: time.Now().Add(time.Hour), Origin: "cli"})
	pub.pub(t, "blacklist/ban/203.0.113.9", 1, true, string(st))
	pub.pub(t, "blacklist/add", 1, false, "203.0.113.9 timeout 3600\n192.0.2.3")
	pub.pub(t, "blacklist/del", 1, false, "2001:db8::/64\n192.0.2.200")
	// mochi acknowledges a publish before the keeper has it, so the
	// marker alone may pass the keeper's answers; the state of one more
	// add, which the keeper takes after the others, closes the read.
	pub.pub(t, "blacklist/add", 1, false, "192.0.2.250")
	got = watch.statesUntil(t, "blacklist/ban/192.0.2.250")
	// The 2 s ban may expire meanwhile (slow machines, qemu): checked below.
	expired, expiredEarly := got["blacklist/ban/192.0.2.1"]
	delete(got, "blacklist/ban/192.0.2.1")
	want := map[string][]string{"blacklist/ban/203.0.113.9": {string(st)}, "blacklist/ban/2001:db8::/64": {""}}
	if len(got) != len(want) || len(got["blacklist/ban/203.0.113.9"]) != 1 || len(got["blacklist/ban/2001:db8::/64"]) != 1 || got["blacklist/ban/2001:db8::/64"][0] != "" {
		t.Errorf("after repeat and del: %q, want %q", got, want)
	}

	// The 2 s ban expires: its state is cleared.
	m := msg{topic: "blacklist/ban/192.0.2.1"}
	if expiredEarly {
		m.payload = expired[len(expired)-1]
	} else {
		m = watch.until(t, "blacklist/ban/192.0.2.1", 5*time.Second)
	}
	if m.payload != "" {
		t.Errorf("expired ban: got %q, want an empty retained message", m.payload)
	}
	if d := time.Since(before); d < 1*time.Second {
		t.Errorf("ban with timeout 2 cleared after %v", d)
	}
	fresh := mustDial(t, u)
	retained := fresh.retainedOnly(t, "blacklist/ban/#")
	if len(retained) != 3 || retained["blacklist/ban/192.0.2.3"] == nil || retained["blacklist/ban/203.0.113.9"] == nil || retained["blacklist/ban/192.0.2.250"] == nil {
		t.Errorf("retained states at the end: %q, want 192.0.2.3, 203.0.113.9 and 192.0.2.250", retained)
	}
}

// TestKeeperLoadsState: states in the store when the broker starts are
// tracked: expired ones are cleared at once, the others when they expire,
// permanent ones kept.
func TestKeeperLoadsState(t *testing.T) {
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: t.TempDir(), Logger: testLogger(t)}
	b1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runBroker(t, b1)
	pub := mustDial(t, url(t, b1, KindTCP))
	now := time.Now()
	for topic, exp := range map[string]time.Time{
		"blacklist/ban/192.0.2.1": now.Add(-time.Minute), // expired while the broker was down
		"blacklist/ban/192.0.2.2": now.Add(2 * time.Second),
		"blacklist/ban/192.0.2.3": {},
	} {
		pub.pub(t, topic, 1, true, string(wire.EncodeState(wire.State{At: now, Expires: exp})))
	}
	pub.Disconnect(50)
	stop1() // no keeper in the first broker: nothing was cleared yet

	o.Lists = []string{"blacklist"}
	b2 := start(t, o)
	deadline := time.Now().Add(6 * time.Second)
	for {
		c := mustDial(t, url(t, b2, KindTCP))
		left := c.retainedOnly(t, "blacklist/ban/#")
		c.Disconnect(10)
		if len(left) == 1 && left["blacklist/ban/192.0.2.3"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retained states 6 s after start: %q, want only the permanent 192.0.2.3", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// retainedOnly subscribes to filter and returns its retained messages,
// which the broker sends before the sync marker published after the
// subscription. Both filters go in one SUBSCRIBE: mochi refuses a
// SUBSCRIBE whose packet id equals that of a message it has in flight to
// the client (0x91), and the retained messages are in flight.
func (c *client) retainedOnly(t *testing.T, filter string) map[string][]string {
	t.Helper()
	tok := c.SubscribeMultiple(map[string]byte{filter: 1, "vallum/sync/#": 1}, nil)
	if err := wait(t, tok, "subscribe"); err != nil {
		t.Fatal(err)
	}
	c.pub(t, "vallum/sync/test", 1, false, "")
	return c.states(t)
}

// An event that reaches the keeper after a client published its prefix's
// state is not turned into state: e.g. an add event after a client lifted the ban (mochi
// acknowledges before it fans out, so the event of `vallum ban` can come
// after the state of the `vallum unban` that followed it) is not turned
// into state again: the lifted ban stays lifted. A legacy add with no
// unban before it still becomes state.
func TestKeeperLateAddAfterUnban(t *testing.T) {
	b := start(t, Options{Listeners: []Listener{local(KindTCP)}, Lists: []string{"blacklist"}})
	u := url(t, b, KindTCP)
	pub := mustDial(t, u)
	pub.pub(t, "blacklist/ban/192.0.2.1", 1, true, `{"at":1700000000000}`)
	pub.pub(t, "blacklist/ban/192.0.2.1", 1, true, "") // vallum unban: the state first
	pub.pub(t, "blacklist/add", 1, false, "192.0.2.1\n192.0.2.2")
	// mochi acknowledges the add before the keeper has it: read until its
	// state of 192.0.2.2 is there (the keeper decides both lines at once).
	var got map[string]string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if got = drain(t, mustDial(t, u), "blacklist/ban/#"); got["blacklist/ban/192.0.2.2"] != "" || time.Now().After(deadline) {
			break
		}
	}
	if _, ok := got["blacklist/ban/192.0.2.1"]; ok {
		t.Errorf("retained states %v: the late add banned 192.0.2.1 again after its unban", got)
	}
	if _, ok := got["blacklist/ban/192.0.2.2"]; !ok {
		t.Errorf("retained states %v: want the legacy add of 192.0.2.2 as state", got)
	}
	// The other way: the late del of an unban after the next ban.
	pub.pub(t, "blacklist/ban/192.0.2.3", 1, true, `{"at":1700000000000}`)
	pub.pub(t, "blacklist/del", 1, false, "192.0.2.3")
	if got := drain(t, mustDial(t, u), "blacklist/ban/#"); got["blacklist/ban/192.0.2.3"] == "" {
		t.Errorf("retained states %v: the late del lifted the ban of 192.0.2.3 made after it", got)
	}
}

// TestKeeperFromUsersFile: a broker-only hub without -t keeps the lists
// its users file names: a legacy event there becomes state. Without any
// list, one WARN line says no keeper runs and how to name lists.
func TestKeeperFromUsersFile(t *testing.T) {
	users := writeUsers(t, `users:
  - name: rep
    password: "HASH(rep)"
    role: reporter
    lists: ["site1/blacklist"]
  - name: admin
    password: "HASH(admin)"
    role: admin
`, "rep", "admin")
	b := start(t, Options{Listeners: []Listener{local(KindTCP)}, UsersFile: users})
	u := url(t, b, KindTCP)
	rep := mustDial(t, u, withUser("rep", "rep"))
	rep.pub(t, "site1/blacklist/add", 1, false, "192.0.2.1")
	admin := mustDial(t, u, withUser("admin", "admin"))
	deadline := time.Now().Add(5 * time.Second)
	for drain(t, admin, "site1/blacklist/ban/#")["site1/blacklist/ban/192.0.2.1"] == "" {
		if time.Now().After(deadline) {
			t.Fatal("the legacy event of a list named in the users file became no state within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	logs := &logBuf{}
	start(t, Options{Listeners: []Listener{local(KindTCP)}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if l := logs.lines("level=WARN", "no keeper runs", "-t LIST", "users file"); len(l) != 1 {
		t.Errorf("WARN lines about no keeper: %q, want one naming -t and the users file", l)
	}
}

// TestKeeperRecordKept: the hub publishes a record for each list, and its
// epoch survives a restart (the store keeps it), so hosts see the same
// life of the list.
func TestKeeperRecordKept(t *testing.T) {
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: t.TempDir(), Logger: testLogger(t), Lists: []string{"blacklist"}}
	record := func(b *Broker) wire.Record {
		c := mustDial(t, url(t, b, KindTCP))
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := drain(t, c, wire.RecordTopic("blacklist"))
			if r, err := wire.DecodeRecord([]byte(got[wire.RecordTopic("blacklist")])); err == nil {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("no keeper record within 5 s: %q", got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	b1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop := runBroker(t, b1)
	r1 := record(b1)
	stop()
	r2 := record(start(t, o))
	if r1.Epoch != r2.Epoch || r1.Keeper != "hub" {
		t.Errorf("records %+v then %+v after a restart: want the hub's, one epoch", r1, r2)
	}
}

// TestKeeperLimits: the hub's keeper applies the limits it is given.
func TestKeeperLimits(t *testing.T) {
	b := start(t, Options{Listeners: []Listener{local(KindTCP)}, Lists: []string{"blacklist"},
		Keeper: keeper.Limits{MaxPayload: 40, MinBitsV4: 24}})
	u := url(t, b, KindTCP)
	pub := mustDial(t, u)
	pub.pub(t, "blacklist/add", 1, false, strings.Repeat("192.0.2.1\n", 5))
	pub.pub(t, "blacklist/add", 1, false, "198.51.0.0/16\n203.0.113.7")
	got := map[string]string{}
	for deadline := time.Now().Add(5 * time.Second); got["blacklist/ban/203.0.113.7"] == "" && time.Now().Before(deadline); {
		got = drain(t, mustDial(t, u), "blacklist/ban/#")
	}
	if len(got) != 1 || got["blacklist/ban/203.0.113.7"] == "" {
		t.Errorf("states %v, want only 203.0.113.7 (an event over 40 bytes and a /16 refused)", got)
	}
}

// TestUsersFileBadList: a list of the users file is a list the hub keeps,
// so one that cannot name a list is refused at start, named.
func TestUsersFileBadList(t *testing.T) {
	users := writeUsers(t, "users:\n  - name: rep\n    password: \"HASH(rep)\"\n    role: reporter\n    lists: [\"site1/#\"]\n", "rep")
	_, err := New(Options{Listeners: []Listener{local(KindTCP)}, UsersFile: users})
	if err == nil || !strings.Contains(err.Error(), `list "site1/#"`) {
		t.Errorf("New with a wildcard list in the users file: %v, want it refused, named", err)
	}
}
