//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// Issue 18, the standalone keeper: `vallum keeper` owns the list's state
// on mosquitto (persistence on), as the embedded broker's keeper does on
// the hub. Each test has a mosquitto hub, keepers on hosts of their own,
// and vallum bridges on others.

// mosquittoHub starts a lab with mosquitto (persistence on) on a hub host.
func mosquittoHub(t *testing.T) (*lab.Lab, *hub, string) {
	t.Helper()
	l, dir := newLab(t)
	b := &hub{h: addHost(t, l, "hub"), dir: dir}
	b.start(t, true)
	return l, b, dir
}

// startKeeper runs `vallum keeper` on h against the hub, with a data dir
// and a client id named after name (kept across restarts), and waits until
// it has read the list.
func startKeeper(t *testing.T, h *lab.Host, b *hub, dir, name string, extra ...string) *lab.Proc {
	t.Helper()
	data := filepath.Join(dir, name+"-keeper-data")
	args := append([]string{"keeper", "-h", b.h.Addr4, "-t", root, "--data-dir", data, "--client-id", "keeper-" + name}, extra...)
	p := must[*lab.Proc](t)(h.Start(dir, vallumBin, args...))
	t.Cleanup(func() {
		if out := p.Output(); t.Failed() {
			t.Logf("keeper %s logged:\n%s", name, out[max(0, len(out)-4000):])
		}
	})
	if err := p.WaitLog("keeper read the lists", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// retainedBanTopics is every ban the broker holds for the list, as a new
// host reads it: the live entries of the keeper's chunks (a cut folds
// per-ban states into them at any time), and every retained per-ban
// state, expired or not (an expired state must leave the broker). Sorted;
// with what the read found wrong (a record or chunk that does not read).
func retainedBanTopics(t *testing.T, b *hub) ([]string, []string) {
	t.Helper()
	c := readCompactAt(t, b, b.observer())
	out := slices.Collect(maps.Keys(c.list))
	for ban := range c.held {
		if c.list[ban] == 0 {
			out = append(out, ban)
		}
	}
	slices.Sort(out)
	return out, c.bad
}

// anonymous loopback listener of a broker whose main one asks for logins.
func (b *hub) observer() int {
	if b.h.Name == aclHubName {
		return aclObserverPort
	}
	return hubPort
}

// waitBrokerHolds polls until the broker holds exactly want for the list
// (retainedBanTopics: chunks and per-ban states, an expired state counts).
func waitBrokerHolds(t *testing.T, b *hub, timeout time.Duration, want []string) {
	t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	var got, bad []string
	err := lab.Eventually(timeout, func() (bool, string) {
		got, bad = retainedBanTopics(t, b)
		return len(bad) == 0 && slices.Equal(got, want), fmt.Sprint(bad)
	})
	if err != nil {
		t.Fatalf("broker's retained %s/ban/#: %s (%v)", root, setDiff(got, want), err)
	}
}

// eventLines joins addresses into one event payload, each line with tail.
func eventLines(addrs []string, tail string) string {
	var sb strings.Builder
	for _, a := range addrs {
		sb.WriteString(a + tail + "\n")
	}
	return sb.String()
}

// Expired and unbanned state leaves the broker: 2,000 bans made by legacy
// events with 2 s timeouts expire, 200 of 300 permanent bans are lifted by
// legacy dels, and within a bounded time the broker holds exactly the 100
// live bans, which a host that joins then gets. Without a keeper mosquitto
// kept all 2,300 for good.
func TestKeeperBoundsState(t *testing.T) {
	const short, permanent, lifted = 2000, 300, 200
	l, b, dir := mosquittoHub(t)
	startKeeper(t, addHost(t, l, "k1"), b, dir, "k1")
	pub := b.publisher(t)
	for i := 0; i < short; i += 100 {
		legacy(pub, "add", eventLines(addrs(i, i+100), " timeout 2"))
	}
	legacy(pub, "add", eventLines(addrs(short, short+permanent), ""))
	legacy(pub, "del", eventLines(addrs(short, short+lifted), ""))
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	live := addrs(short+lifted, short+permanent)
	waitBrokerHolds(t, b, 30*time.Second, live)
	host := addHost(t, l, "late")
	startBridge(t, host, b, dir)
	waitSet(t, host, 20*time.Second, live)
}

// Legacy events (mosquitto_pub, as vallumd's fail2ban actions send them)
// become state with a standalone keeper: a host that joins later gets
// them, IPv6 and prefixes included, and not what a del lifted.
func TestKeeperLegacyEventsBecomeState(t *testing.T) {
	l, b, dir := mosquittoHub(t)
	kh := addHost(t, l, "k1")
	startKeeper(t, kh, b, dir, "k1")
	// A second keeper on the same data dir is refused at once.
	out, err := kh.Exec(vallumBin, "keeper", "-h", b.h.Addr4, "-t", root, "--data-dir", filepath.Join(dir, "k1-keeper-data"), "--client-id", "keeper-k1b")
	if err == nil || !strings.Contains(out, "in use by another vallum (pid") {
		t.Errorf("a second keeper on the data dir: %v, want a refusal naming the first one's pid:\n%s", err, out)
	}
	for _, m := range []struct{ topic, payload string }{
		{"blacklist/add", "203.0.113.7"},
		{"blacklist/add", "2001:db8::7 timeout 600"},
		{"blacklist/add", "198.51.100.0/24\n203.0.113.9 timeout 3600"},
		{"blacklist", "192.0.2.44"},
		{"blacklist/del", "203.0.113.7"},
	} {
		must[string](t)(b.h.Exec("mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t", m.topic, "-m", m.payload))
	}
	waitBrokerHolds(t, b, 20*time.Second, []string{"192.0.2.44", "198.51.100.0/24", "203.0.113.9", "2001:db8::7"})
	host := addHost(t, l, "late")
	startBridge(t, host, b, dir)
	waitSet(t, host, 20*time.Second, []string{"192.0.2.44", "198.51.100.0/24", "203.0.113.9"})
	waitPrefixes(t, host, "blacklist6", "2001:db8::7")
	checkTimeout(t, "blacklist", members(t, host, "blacklist"), "203.0.113.9", 3600, 60)
}

// mosquitto restarted without persistence comes back empty: the keeper
// finds the list lost, says so at ERROR, and rebuilds it from its copy; no
// host loses a ban meanwhile, and a host that joins afterwards gets the
// whole list. Twice: with the keeper running through the restart, and
// with the keeper away until the hosts have synced with the empty broker.
// (The hosts' side, keeping their bans while the list is missing, is the
// bridge's: the second case passes only with it.)
func TestKeeperRebuildsLostList(t *testing.T) {
	for _, away := range []bool{false, true} {
		t.Run(map[bool]string{false: "keeper-up", true: "keeper-back-later"}[away], func(t *testing.T) {
			rebuildLostList(t, away)
		})
	}
}

func rebuildLostList(t *testing.T, away bool) {
	const n = 500
	l, b, dir := mosquittoHub(t)
	kh := addHost(t, l, "k1")
	k := startKeeper(t, kh, b, dir, "k1")
	host := addHost(t, l, "host")
	hv := startBridge(t, host, b, dir)
	pub := b.publisher(t)
	now := time.Now()
	for i := range n / 2 { // as `vallum ban` makes them
		pub.Publish(stateTopic(i), true, ban(i, now, now.Add(time.Hour)).Payload)
	}
	legacy(pub, "add", eventLines(addrs(n/2, n), " timeout 3600")) // as vallumd's actions make them
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	want := addrs(0, n)
	waitSet(t, host, 20*time.Second, want)
	waitBrokerHolds(t, b, 20*time.Second, want)
	// A bridge's sync keeps a ban whose state came in the last 10 s (a
	// lagging broker copy): the bans must be older than that for a sync
	// with the empty broker to put them at stake.
	time.Sleep(11 * time.Second)

	stopWatch := watchFewest(t, host, n)
	logged := len(hv.Output())
	if away {
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	b.stop(t)
	b.start(t, false) // empty: no retained message, no session
	if away {
		// The host reconnects and syncs with the empty broker first.
		err := lab.Eventually(30*time.Second, func() (bool, string) {
			out := hv.Output()[logged:]
			return strings.Contains(out, "synced") || strings.Contains(out, "level=ERROR"), "the host never synced with the restarted broker"
		})
		if err != nil {
			t.Fatal(err)
		}
		k = startKeeper(t, kh, b, dir, "k1")
	}
	// Rebuilt as the keeper keeps it: chunks, and per-ban state for the
	// rest (readCompact: the live bans a host reads).
	err := lab.Eventually(30*time.Second, func() (bool, string) {
		c := readCompact(t, b)
		got, w := slices.Sorted(maps.Keys(c.list)), slices.Sorted(slices.Values(want))
		return len(c.bad) == 0 && slices.Equal(got, w), c.String()
	})
	if err != nil {
		t.Fatalf("the broker's list after the rebuild: %v", err)
	}
	late := addHost(t, l, "late")
	startBridge(t, late, b, dir)
	waitSet(t, late, 20*time.Second, want)
	waitSet(t, host, 20*time.Second, want)
	if f := stopWatch(); f < n {
		t.Errorf("the host's set fell to %d of %d bans while the broker had lost the list", f, n)
	}
	if m := removedSome.FindString(hv.Output()[logged:]); m != "" {
		t.Errorf("the host's sync removed bans (%s) while the broker had lost the list:\n%s", m, hv.Output()[logged:])
	}
	if out := k.Output(); !strings.Contains(out, "level=ERROR") {
		t.Errorf("the keeper logged the lost list below ERROR:\n%s", out)
	}
}

// watchFewest polls the size of h's set until the returned function is
// called, which returns the fewest entries seen.
func watchFewest(t *testing.T, h *lab.Host, n int) func() int64 {
	var fewest atomic.Int64
	fewest.Store(int64(n))
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			if c, err := h.SetCount(root); err == nil && int64(c) < fewest.Load() {
				fewest.Store(int64(c))
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	done := func() int64 {
		once.Do(func() { close(stop); watch.Wait() })
		return fewest.Load()
	}
	t.Cleanup(func() { done() })
	return done
}

// removedSome matches a bridge's sync that removed bans from its sets.
var removedSome = regexp.MustCompile(`removed=[1-9][0-9]*`)

// Two keepers on one list, for availability, do not corrupt it: 10,000
// legacy bans and unbans of 500 addresses in a seeded random order, and
// every host (two running, one that joins after) and the broker end with
// exactly the addresses whose last operation was a ban.
func TestKeeperTwoKeepers10k(t *testing.T) {
	const ops, span = 10000, 500
	l, b, dir := mosquittoHub(t)
	startKeeper(t, addHost(t, l, "k1"), b, dir, "k1")
	startKeeper(t, addHost(t, l, "k2"), b, dir, "k2")
	hosts := []*lab.Host{addHost(t, l, "h1"), addHost(t, l, "h2")}
	for _, h := range hosts {
		startBridge(t, h, b, dir)
	}
	rng := rand.New(rand.NewPCG(18, 2))
	banned := map[int]bool{}
	pub := b.publisher(t)
	for range ops {
		i := rng.IntN(span)
		action := "add"
		if banned[i] && rng.IntN(2) == 0 {
			action = "del"
		}
		banned[i] = action == "add"
		legacy(pub, action, banAddr(i).String())
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, on := range banned {
		if on {
			want = append(want, banAddr(i).String())
		}
	}
	t.Logf("%d operations leave %d of %d addresses banned", ops, len(want), span)
	waitBrokerHolds(t, b, 45*time.Second, want)
	hosts = append(hosts, addHost(t, l, "late"))
	startBridge(t, hosts[2], b, dir)
	for _, h := range hosts {
		waitSet(t, h, 30*time.Second, want)
	}
}

// A keeper SIGKILLed in the middle of a stream of events and started
// again loses none of them: what came while it was dead waited in its
// session, what it had not acknowledged comes again.
func TestKeeperKilledMidStream(t *testing.T) {
	const n = 3000
	l, b, dir := mosquittoHub(t)
	kh := addHost(t, l, "k1")
	k := startKeeper(t, kh, b, dir, "k1")
	pub := b.publisher(t)
	var want []string
	for i := range n {
		if i == n/3 {
			k.Kill()
		}
		legacy(pub, "add", banAddr(i).String())
		if i%10 == 9 { // lift every tenth ban a little later
			legacy(pub, "del", banAddr(i-5).String())
		}
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if i%10 != 4 {
			want = append(want, banAddr(i).String())
		}
	}
	startKeeper(t, kh, b, dir, "k1")
	waitBrokerHolds(t, b, 45*time.Second, want)
	host := addHost(t, l, "late")
	startBridge(t, host, b, dir)
	waitSet(t, host, 20*time.Second, want)
	// The record names the list's one epoch, kept across the restart.
	rec, err := b.h.RetainedState(hubPort, wire.RecordTopic(root), time.Second)
	if err != nil || len(rec) != 1 {
		t.Fatalf("record %s: %v (%v), want one", wire.RecordTopic(root), rec, err)
	}
	if _, err := wire.DecodeRecord([]byte(rec[wire.RecordTopic(root)])); err != nil {
		t.Fatalf("record: %v", err)
	}
}

const (
	aclHubName      = "aclhub"
	aclObserverPort = 1884
)

// contrib/mosquitto/vallum.acl gives each login what it needs and no more:
// the keeper keeps the list (a ban made by `vallum ban` as the reporter
// expires from the broker, a legacy event becomes state), a host gets the
// list; and neither the reporter nor a host can write the list's record,
// nor a host a ban.
func TestKeeperMosquittoACL(t *testing.T) {
	l, dir := newLab(t)
	b := &hub{h: addHost(t, l, aclHubName), dir: dir}
	pwFile := filepath.Join(dir, "mosquitto.passwd")
	users := map[string]string{}
	for i, u := range []string{"keeper", "edge1", "fail2ban"} {
		pw := fmt.Sprintf("pw-%d-%s", i, u)
		args := []string{"-b", pwFile, u, pw}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		must[string](t)(b.h.Exec("mosquitto_passwd", args...))
		users[u] = filepath.Join(dir, u+".pw")
		if err := os.WriteFile(users[u], []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	acl := must[string](t)(filepath.Abs(filepath.Join("..", "contrib", "mosquitto", "vallum.acl")))
	// The ACL on the hosts' listener; an anonymous one on the hub's
	// loopback for the test to read the broker's state.
	conf := filepath.Join(dir, "mosquitto-acl.conf")
	body := fmt.Sprintf("user root\nper_listener_settings true\nmax_queued_messages 2000000\nlog_dest stdout\n"+
		"persistence true\npersistence_location %s/\nautosave_interval 1\n"+
		"listener %d\nallow_anonymous false\npassword_file %s\nacl_file %s\n"+
		"listener %d 127.0.0.1\nallow_anonymous true\n", dir, hubPort, pwFile, acl, aclObserverPort)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	b.proc = must[*lab.Proc](t)(b.h.Start(dir, "mosquitto", "-c", conf))
	for _, port := range []int{hubPort, aclObserverPort} {
		if err := b.h.WaitPort(port, 10*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, b.proc.Output())
		}
	}
	as := func(u string) []string { return []string{"-u", u, "--password-file", users[u]} }
	k := startKeeper(t, addHost(t, l, "k1"), b, dir, "k1", as("keeper")...)
	host := addHost(t, l, "host")
	startBridge(t, host, b, dir, as("edge1")...)

	reporter := addHost(t, l, "reporter")
	cli := func(u string, args ...string) (string, error) {
		return reporter.Exec(vallumBin, append(append(args, "-h", b.h.Addr4, "--data-dir", filepath.Join(dir, "cli")), as(u)...)...)
	}
	must[string](t)(cli("fail2ban", "ban", root, "203.0.113.1", "--timeout", "2"))
	must[string](t)(cli("fail2ban", "ban", root, "203.0.113.2"))
	must[string](t)(reporter.Exec("mosquitto_pub", "-h", b.h.Addr4, "-q", "1", "-u", "fail2ban", "-P", "pw-2-fail2ban",
		"-t", root+"/add", "-m", "203.0.113.3"))
	waitBrokerHolds(t, b, 20*time.Second, []string{"203.0.113.2", "203.0.113.3"})
	waitSet(t, host, 20*time.Second, []string{"203.0.113.2", "203.0.113.3"})

	// Forgeries: a record from the reporter and from a host, a ban from a
	// host. mosquitto drops a refused publish without a word, so the proof
	// is the broker's state afterwards.
	recTopic := wire.RecordTopic(root)
	before := must[map[string]string](t)(b.h.RetainedState(aclObserverPort, recTopic, time.Second))
	// The lowest epoch: two keepers settle on the lower of theirs, so a
	// forgery that got through would show as the keeper adopting it.
	forged := string(wire.EncodeRecord(wire.Record{Epoch: "0000000000000000", Since: time.Now(), Keeper: "forger"}))
	for _, u := range []string{"fail2ban", "edge1"} {
		pw := strings.TrimSpace(must[string](t)(reporter.Exec("cat", users[u])))
		reporter.Exec("mosquitto_pub", "-h", b.h.Addr4, "-q", "1", "-u", u, "-P", pw, "-r", "-t", recTopic, "-n")
		reporter.Exec("mosquitto_pub", "-h", b.h.Addr4, "-q", "1", "-u", u, "-P", pw, "-r", "-t", recTopic, "-m", forged)
	}
	reporter.Exec("mosquitto_pub", "-h", b.h.Addr4, "-q", "1", "-u", "edge1", "-P", "pw-1-edge1", "-r",
		"-t", root+"/ban/203.0.113.66", "-m", string(ban(0, time.Now(), time.Time{}).Payload))
	after := must[map[string]string](t)(b.h.RetainedState(aclObserverPort, recTopic, time.Second))
	if len(before) != 1 || !maps.Equal(before, after) {
		t.Errorf("the record was %v, is %v after the forgeries: want one record, unchanged", before, after)
	}
	waitBrokerHolds(t, b, 5*time.Second, []string{"203.0.113.2", "203.0.113.3"})
	if strings.Contains(k.Output(), "level=ERROR") {
		t.Errorf("the keeper logged an error:\n%s", k.Output())
	}
}

// `vallum -h BROKER -t LIST --keeper` runs a keeper beside the bridge, on
// a client id of its own (the two do not knock each other off the broker):
// legacy events become state and expired state leaves the broker.
func TestKeeperBesideTheBridge(t *testing.T) {
	l, b, dir := mosquittoHub(t)
	host := addHost(t, l, "host")
	v := startBridge(t, host, b, dir, "--keeper")
	if err := v.WaitLog("keeper read the lists", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	must[string](t)(b.h.Exec("mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t", root+"/add", "-m", "203.0.113.1 timeout 2\n203.0.113.2"))
	waitSet(t, host, 20*time.Second, []string{"203.0.113.2"})
	waitBrokerHolds(t, b, 20*time.Second, []string{"203.0.113.2"})
	if n := strings.Count(v.Output(), "msg=disconnected"); n > 0 {
		t.Errorf("the bridge or its keeper was disconnected %d times:\n%s", n, v.Output())
	}
}

// The keeper on a NATS cluster (contrib/nats/nats.conf), given every node:
// legacy events published through one node become state that another
// node serves, and expired state leaves. (Not here: the keeper's node
// killed. The keeper moves on as the bridges do, but NATS 2.15 took about
// a minute to take publishes again after a node died, past this test's
// bound.)
func TestKeeperOnNATS(t *testing.T) {
	l, dir, nodes := natsCluster(t)
	kh := addHost(t, l, "k")
	k := must[*lab.Proc](t)(kh.Start(dir, vallumBin, "keeper", "-h", nodesFrom(nodes, 0), "-t", root,
		"--data-dir", filepath.Join(dir, "k-keeper-data"), "--client-id", "keeper-k"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keeper logged:\n%s", lastLines(k.Output(), 60))
			for _, n := range nodes {
				t.Logf("%s logged:\n%s", n.Name, lastLines(n.Proc.Output(), 30))
			}
		}
	})
	if err := k.WaitLog("keeper read the lists", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	held := func(want ...string) {
		t.Helper()
		var got []string
		err := lab.Eventually(60*time.Second, func() (bool, string) {
			m, err := nodes[2].Host.RetainedState(lab.NATSMQTTPort, root+"/ban/#", time.Second)
			got = got[:0]
			for topic := range m {
				got = append(got, strings.TrimPrefix(topic, root+"/ban/"))
			}
			slices.Sort(got)
			return err == nil && slices.Equal(got, want), fmt.Sprint(err)
		})
		if err != nil {
			t.Fatalf("node 3 holds %v, want %v (%v)", got, want, err)
		}
	}
	pub := must[*lab.Publisher](t)(nodes[1].Host.NewPublisher(lab.NATSMQTTPort))
	// No del right after its add here: NATS delivers each topic on its
	// own, so the keeper may get the two in either order.
	legacy(pub, "add", "203.0.113.1 timeout 2\n203.0.113.2")
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	held("203.0.113.2")
}
