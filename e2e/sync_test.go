//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// Issue 4, "one list everywhere": every test runs against mosquitto (with
// persistence) and against vallum's embedded broker, each on a hub host,
// with the bridges on other hosts of the lab.

const (
	hubPort  = 1883
	root     = "blacklist"
	handAddr = "192.0.2.99" // added by a person: no sync may remove it
)

// hub is the broker host of a test.
type hub struct {
	embedded bool
	h        *lab.Host
	dir      string
	proc     *lab.Proc
	gen      int // the embedded broker's store: a new one forgets everything
}

func (b *hub) name() string {
	if b.embedded {
		return "embedded"
	}
	return "mosquitto"
}

// start runs the broker; persist=false starts it without what it stored.
func (b *hub) start(t *testing.T, persist bool) {
	t.Helper()
	if !b.embedded {
		b.proc = must[*lab.Proc](t)(b.h.StartMosquitto(b.dir, hubPort, persist))
		return
	}
	if !persist {
		b.gen++
	}
	data := filepath.Join(b.dir, fmt.Sprintf("hub-store-%d", b.gen))
	args := []string{"broker", "--listen", fmt.Sprintf("0.0.0.0:%d", hubPort), "--allow-anonymous", "-t", root, "--data-dir", data}
	b.proc = must[*lab.Proc](t)(b.h.Start(b.dir, vallumBin, args...))
	if err := b.h.WaitPort(hubPort, 20*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, b.proc.Output())
	}
}

func (b *hub) stop(t *testing.T) {
	t.Helper()
	if err := b.proc.Stop(); err != nil {
		t.Errorf("%s broker on SIGTERM: %v\n%s", b.name(), err, b.proc.Output())
	}
}

func (b *hub) publisher(t *testing.T) *lab.Publisher {
	t.Helper()
	return must[*lab.Publisher](t)(b.h.NewPublisher(hubPort))
}

// state returns the active bans of the list, as `vallum list` reads
// them from the broker (per-ban states, and the keeper's chunks).
func (b *hub) state(t *testing.T) []string {
	t.Helper()
	return slices.Sorted(maps.Keys(listed(t, b.h, b.h.Addr4, hubPort)))
}

// eachBroker runs body once against mosquitto and once against the
// embedded broker, each in a lab of its own with the hub started.
func eachBroker(t *testing.T, body func(t *testing.T, l *lab.Lab, b *hub, dir string)) {
	for _, embedded := range []bool{false, true} {
		b := &hub{embedded: embedded}
		t.Run(b.name(), func(t *testing.T) {
			l, dir := newLab(t)
			b.h, b.dir = addHost(t, l, "hub"), dir
			b.start(t, true)
			body(t, l, b, dir)
		})
	}
}

// startBridge starts vallum on h against the hub and waits for its first sync.
func startBridge(t *testing.T, h *lab.Host, b *hub, dir string, args ...string) *lab.Proc {
	t.Helper()
	args = append([]string{"-h", b.h.Addr4, "-t", root}, args...)
	p, err := h.StartVallum(dir, vallumBin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func stopBridge(t *testing.T, p *lab.Proc) {
	t.Helper()
	if err := p.Stop(); err != nil {
		t.Errorf("vallum on SIGTERM: %v, want exit 0\n%s", err, p.Output())
	}
}

func handAdd(t *testing.T, h *lab.Host) {
	t.Helper()
	must[string](t)(h.Exec("ipset", "add", root, handAddr))
}

// banAddr is the i-th address of the bulk range 198.18.0.0/15.
func banAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
}

func stateTopic(i int) string {
	return wire.StateTopic(root, netip.PrefixFrom(banAddr(i), 32))
}

// ban is a retained state for address i; a zero exp is permanent.
func ban(i int, at, exp time.Time) lab.Retained {
	return lab.Retained{Topic: stateTopic(i), Payload: wire.EncodeState(wire.State{At: at, Expires: exp, Origin: "e2e"})}
}

func unban(i int) lab.Retained { return lab.Retained{Topic: stateTopic(i)} }

// addrs returns the addresses of the indexes in [from, to), plus extra.
func addrs(from, to int, extra ...string) []string {
	out := slices.Clone(extra)
	for i := from; i < to; i++ {
		out = append(out, banAddr(i).String())
	}
	return out
}

// waitSet polls the host's set until it holds exactly want; a failure
// reports how it differs, not 100,000 addresses.
func waitSet(t *testing.T, h *lab.Host, timeout time.Duration, want []string) {
	t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	var got []string
	err := lab.Eventually(timeout, func() (bool, string) {
		var err error
		if got, err = h.Prefixes(root); err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), ""
	})
	if err != nil {
		t.Fatalf("set %s on %s: %s (%v)", root, h.Name, setDiff(got, want), err)
	}
}

// setDiff describes how two sorted lists differ.
func setDiff(got, want []string) string {
	var missing, extra []string
	i, j := 0, 0
	for i < len(got) || j < len(want) {
		switch {
		case j == len(want) || i < len(got) && got[i] < want[j]:
			extra = append(extra, got[i])
			i++
		case i == len(got) || want[j] < got[i]:
			missing = append(missing, want[j])
			j++
		default:
			i++
			j++
		}
	}
	return fmt.Sprintf("%d entries, want %d: %d missing %v, %d extra %v",
		len(got), len(want), len(missing), first(missing), len(extra), first(extra))
}

func first(s []string) []string { return s[:min(len(s), 8)] }

// checkTimeouts compares the kernel's remaining timeouts of a sample of the
// bulk addresses with their expiry times.
func checkTimeouts(t *testing.T, h *lab.Host, expires map[string]time.Time) {
	t.Helper()
	ms := must[[]lab.Member](t)(h.Members(root))
	now := time.Now()
	checked := 0
	for i, m := range ms {
		exp, ok := expires[m.Prefix]
		if !ok || i%499 != 0 {
			continue
		}
		checked++
		want := 0
		if !exp.IsZero() {
			want = int(exp.Sub(now).Round(time.Second) / time.Second)
		}
		if d := m.Timeout - want; d < -3 || d > 3 || (want == 0) != (m.Timeout == 0) {
			t.Errorf("%s timeout %d s, want %d s (expires %v)", m.Prefix, m.Timeout, want, exp)
		}
	}
	if checked < 100 {
		t.Errorf("checked only %d timeouts", checked)
	}
}

// TestLateJoin: 100,000 active bans, 2,000 expired and 2,000 lifted are on
// the broker before a host starts; it converges to exactly the active ones
// with their remaining timeouts, and a restart keeps it so (and keeps what
// a person added by hand).
func TestLateJoin(t *testing.T) {
	const active, expired, lifted = 100_000, 2_000, 2_000
	eachBroker(t, func(t *testing.T, l *lab.Lab, b *hub, dir string) {
		host := addHost(t, l, "host")
		now := time.Now()
		expires := map[string]time.Time{}
		msgs := make([]lab.Retained, 0, active+expired+2*lifted)
		for i := 0; i < active; i++ {
			var exp time.Time // every tenth ban is permanent
			if i%10 != 0 {
				exp = time.Unix(now.Add(time.Hour+time.Duration(i%3600)*time.Second).Unix(), 0)
			}
			expires[banAddr(i).String()] = exp
			msgs = append(msgs, ban(i, now, exp))
		}
		for i := active; i < active+expired; i++ {
			msgs = append(msgs, ban(i, now.Add(-2*time.Hour), now.Add(-time.Hour)))
		}
		for i := active + expired; i < active+expired+lifted; i++ {
			msgs = append(msgs, ban(i, now, now.Add(time.Hour)), unban(i))
		}
		pub := b.publisher(t)
		start := time.Now()
		pub.PublishAll(msgs)
		if err := pub.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: published %d retained messages in %v", b.name(), len(msgs), time.Since(start).Round(time.Millisecond))

		start = time.Now()
		v := must[*lab.Proc](t)(host.StartVallumNoWait(dir, vallumBin, "-h", b.h.Addr4, "-t", root))
		if err := v.WaitLog("subscribed and synced", 90*time.Second); err != nil {
			t.Fatal(err)
		}
		err := lab.Eventually(60*time.Second, func() (bool, string) {
			n, err := host.SetCount(root)
			return n == active, fmt.Sprintf("%d entries (%v)", n, err)
		})
		took := time.Since(start)
		if err != nil {
			t.Fatalf("late join: %v", err)
		}
		t.Logf("%s: late join of %d bans (+%d expired, +%d lifted) took %.2f s from vallum start to a full set",
			b.name(), active, expired, lifted, took.Seconds())
		want := addrs(0, active)
		waitSet(t, host, 10*time.Second, want)
		checkTimeouts(t, host, expires)

		handAdd(t, host)
		stopBridge(t, v)
		start = time.Now()
		v = startBridge(t, host, b, dir)
		if err := v.WaitLog(fmt.Sprintf("active=%d removed=0", active), 60*time.Second); err != nil {
			t.Error(err)
		}
		t.Logf("%s: restart and resync of %d bans took %.2f s", b.name(), active, time.Since(start).Seconds())
		waitSet(t, host, 10*time.Second, append(want, handAddr))
	})
}

// legacy publishes vallumd-style events (not retained) on ROOT/add or ROOT/del.
func legacy(pub *lab.Publisher, action, payload string) {
	pub.Publish(root+"/"+action, false, []byte(payload))
}

// TestOffline: a host is stopped, 1,000 bans and 500 unbans are made while
// it is away (as state, and a few as legacy events), and when it starts
// again it has the new bans and not the lifted ones. Legacy events follow
// the persistent session: an add made while away arrives, a del removes.
func TestOffline(t *testing.T) {
	eachBroker(t, func(t *testing.T, l *lab.Lab, b *hub, dir string) {
		host := addHost(t, l, "host")
		v := startBridge(t, host, b, dir)
		handAdd(t, host)
		exp := time.Now().Add(time.Hour)
		pub := b.publisher(t)
		for i := 0; i < 1000; i++ {
			pub.Publish(stateTopic(i), true, ban(i, time.Now(), exp).Payload)
		}
		legacy(pub, "add", "203.0.113.1\n203.0.113.2 timeout 3600")
		if err := pub.Close(); err != nil {
			t.Fatal(err)
		}
		waitSet(t, host, 20*time.Second, addrs(0, 1000, handAddr, "203.0.113.1", "203.0.113.2"))

		stopBridge(t, v)
		pub = b.publisher(t)
		for i := 1000; i < 2000; i++ {
			pub.Publish(stateTopic(i), true, ban(i, time.Now(), exp).Payload)
		}
		for i := 0; i < 500; i++ {
			pub.Publish(stateTopic(i), true, nil)
		}
		legacy(pub, "add", "203.0.113.3 timeout 3600")
		legacy(pub, "del", "203.0.113.1")
		if err := pub.Close(); err != nil {
			t.Fatal(err)
		}
		// Stopping never flushes: the set is as it was while vallum is away.
		waitSet(t, host, time.Second, addrs(0, 1000, handAddr, "203.0.113.1", "203.0.113.2"))

		v = startBridge(t, host, b, dir)
		waitSet(t, host, 20*time.Second, addrs(500, 2000, handAddr, "203.0.113.2", "203.0.113.3"))
		stopBridge(t, v)
	})
}

// TestSessionLost: the broker forgets the host's session. First the broker
// restarts without its store (the state is published again, without 200
// bans lifted meanwhile); then the host comes back under a new client id
// after 100 more unbans. Each time the sync removes what was lifted and
// keeps the hand-added entry. A legacy event's entry stays on mosquitto,
// which holds no state for it (a sync never removes it); the embedded
// broker's keeper made it state, which the restart without a store lost,
// so there the sync removes it like any other lifted ban.
func TestSessionLost(t *testing.T) {
	eachBroker(t, func(t *testing.T, l *lab.Lab, b *hub, dir string) {
		host := addHost(t, l, "host")
		v := startBridge(t, host, b, dir)
		handAdd(t, host)
		exp := time.Now().Add(time.Hour)
		publish := func(from, to int, extra ...lab.Retained) {
			t.Helper()
			pub := b.publisher(t)
			for i := from; i < to; i++ {
				pub.Publish(stateTopic(i), true, ban(i, time.Now(), exp).Payload)
			}
			pub.PublishAll(extra)
			if err := pub.Close(); err != nil {
				t.Fatal(err)
			}
		}
		publish(0, 1000)
		pub := b.publisher(t)
		legacy(pub, "add", "203.0.113.5")
		if err := pub.Close(); err != nil {
			t.Fatal(err)
		}
		waitSet(t, host, 20*time.Second, addrs(0, 1000, handAddr, "203.0.113.5"))

		stopBridge(t, v)
		b.stop(t)
		b.start(t, false) // no retained state, no sessions
		publish(200, 1100)
		v = startBridge(t, host, b, dir)
		// Where a keeper record said which list the host followed, the
		// host keeps its bans (a lost list is not an unban) until told to
		// take the broker's list as it is: SIGHUP, once its sync is done.
		if err := v.WaitLog("topic="+root+" active=", 20*time.Second); err != nil {
			t.Fatal(err)
		}
		v.Signal(syscall.SIGHUP)
		kept, removed := []string{handAddr, "203.0.113.5"}, "active=900 removed=200\n"
		if b.embedded {
			kept, removed = kept[:1], "active=900 removed=201\n"
		}
		waitSet(t, host, 20*time.Second, addrs(200, 1100, kept...))
		if err := v.WaitLog(removed, 5*time.Second); err != nil {
			t.Error(err)
		}

		stopBridge(t, v)
		var lifts []lab.Retained
		for i := 200; i < 300; i++ {
			lifts = append(lifts, unban(i))
		}
		publish(1100, 1150, lifts...)
		v = startBridge(t, host, b, dir, "--client-id", "e2e-new-session")
		waitSet(t, host, 20*time.Second, addrs(300, 1150, kept...))
		stopBridge(t, v)
	})
}

// TestOrder: two publishers interleave 10,000 bans and unbans of 100
// addresses (ban: retained state; unban: empty retained) while one host's
// vallum is killed and restarted and the other's broker connection is cut.
// In the end both hosts' sets equal the state the broker holds.
func TestOrder(t *testing.T) {
	const ops, addrCount = 10_000, 100
	eachBroker(t, func(t *testing.T, l *lab.Lab, b *hub, dir string) {
		a, c := addHost(t, l, "a"), addHost(t, l, "c")
		va := startBridge(t, a, b, dir)
		vc := startBridge(t, c, b, dir)
		handAdd(t, a)
		handAdd(t, c)

		var done atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for seed := uint64(1); seed <= 2; seed++ {
			pub := b.publisher(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(seed, 42))
				for n := 0; n < ops/2; n++ {
					i := rnd.IntN(addrCount)
					var payload []byte
					if rnd.IntN(10) < 6 {
						payload = ban(i, time.Now(), time.Now().Add(time.Hour)).Payload
					}
					pub.Publish(stateTopic(i), true, payload)
					if n%100 == 99 { // pace, so that the cuts fall mid-stream
						time.Sleep(40 * time.Millisecond)
					}
					done.Add(1)
				}
				errs <- pub.Close()
			}()
		}
		at := func(n int64) {
			t.Helper()
			if err := lab.Eventually(60*time.Second, func() (bool, string) {
				return done.Load() >= n, fmt.Sprintf("publishers stuck at %d", done.Load())
			}); err != nil {
				t.Fatal(err)
			}
		}
		at(ops * 3 / 10)
		vc.Kill()
		at(ops / 2)
		cut(t, a)
		at(ops * 6 / 10)
		vc = must[*lab.Proc](t)(c.StartVallumNoWait(dir, vallumBin, "-h", b.h.Addr4, "-t", root))
		wg.Wait()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if err := vc.WaitLog("subscribed and synced", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := lab.Eventually(30*time.Second, func() (bool, string) {
			return strings.Count(va.Output(), "subscribed and synced") >= 2, "host a did not sync again after its connection was cut:\n" + va.Output()
		}); err != nil {
			t.Fatal(err)
		}
		want := b.state(t)
		t.Logf("%s: %d of %d addresses banned at the end", b.name(), len(want), addrCount)
		for _, h := range []*lab.Host{a, c} {
			waitSet(t, h, 30*time.Second, append(want, handAddr))
		}
	})
}

// cut kills the host's TCP connections to the broker (ss -K), as a network
// failure would; paho reconnects.
func cut(t *testing.T, h *lab.Host) {
	t.Helper()
	out, err := h.Exec("ss", "-K", "-tn", "dport", "=", fmt.Sprint(hubPort))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "ESTAB") {
		t.Fatalf("ss -K killed no connection in %s:\n%s", h.Name, out)
	}
}

// TestExpiry: a ban made with `vallum ban --timeout 2` and a legacy event
// with "timeout 2" leave the set by themselves; `vallum list` stops
// showing the ban; on the embedded broker the keeper clears both retained
// states; a host that starts afterwards does not bring them back.
func TestExpiry(t *testing.T) {
	eachBroker(t, func(t *testing.T, l *lab.Lab, b *hub, dir string) {
		host := addHost(t, l, "host")
		v := startBridge(t, host, b, dir)
		handAdd(t, host)
		vallumCLI := func(args ...string) string {
			t.Helper()
			return must[string](t)(b.h.Exec(vallumBin, append(args, "-h", "127.0.0.1", "--data-dir", filepath.Join(dir, "cli-data"))...))
		}
		seen := watchStates(t, b)
		vallumCLI("ban", root, "198.51.100.5", "--timeout", "2", "--reason", "e2e")
		vallumCLI("ban", root, "198.51.100.6", "--reason", "e2e")
		pub := b.publisher(t)
		legacy(pub, "add", "198.51.100.7 timeout 2")
		if err := pub.Close(); err != nil {
			t.Fatal(err)
		}
		if err := lab.Eventually(2*time.Second, func() (bool, string) {
			ms, err := host.Members(root)
			found := 0
			for _, m := range ms {
				if (m.Prefix == "198.51.100.5" || m.Prefix == "198.51.100.7") && m.Timeout > 0 && m.Timeout <= 2 {
					found++
				}
			}
			return found == 2, fmt.Sprintf("no 2 s bans in %v (%v)", ms, err)
		}); err != nil {
			t.Fatal(err)
		}
		waitSet(t, host, 10*time.Second, []string{handAddr, "198.51.100.6"})
		if out := vallumCLI("list", root); strings.Contains(out, "198.51.100.5") || !strings.Contains(out, "198.51.100.6") {
			t.Errorf("vallum list after the expiry:\n%s\nwant 198.51.100.6 and not 198.51.100.5", out)
		}
		if b.embedded {
			for _, a := range []string{"198.51.100.5", "198.51.100.7"} {
				if err := lab.Eventually(10*time.Second, func() (bool, string) {
					s := seen(root + "/ban/" + a)
					return strings.HasPrefix(s, "set") && strings.HasSuffix(s, "set,cleared"), fmt.Sprintf("state of %s went %q, want set then cleared by the keeper", a, s)
				}); err != nil {
					t.Error(err)
				}
			}
			err := lab.Eventually(10*time.Second, func() (bool, string) {
				held, err := b.h.RetainedState(hubPort, root+"/ban/#", 300*time.Millisecond)
				_, five := held[root+"/ban/198.51.100.5"]
				_, seven := held[root+"/ban/198.51.100.7"]
				return err == nil && !five && !seven, fmt.Sprintf("the keeper did not clear the expired states: %v (%v)", held, err)
			})
			if err != nil {
				t.Error(err)
			}
		}
		stopBridge(t, v)
		late := addHost(t, l, "late")
		startBridge(t, late, b, dir)
		startBridge(t, host, b, dir)
		waitSet(t, late, 10*time.Second, []string{"198.51.100.6"})
		waitSet(t, host, 10*time.Second, []string{handAddr, "198.51.100.6"})
	})
}

// watchStates subscribes to the list's state topics and returns what each
// topic went through: "set" for a state, "cleared" for an empty message.
func watchStates(t *testing.T, b *hub) func(topic string) string {
	t.Helper()
	var mu sync.Mutex
	hist := map[string][]string{}
	c := must[mqtt.Client](t)(b.h.Connect(hubPort, mqtt.NewClientOptions().SetClientID("e2e-watch").SetCleanSession(true)))
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(root+"/ban/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		defer mu.Unlock()
		what := "set"
		if len(m.Payload()) == 0 {
			what = "cleared"
		}
		hist[m.Topic()] = append(hist[m.Topic()], what)
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return func(topic string) string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(hist[topic], ",")
	}
}
