//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
)

// pub publishes one message at QoS 1 with mosquitto_pub from inside h to
// its own broker on port 1883, as a fail2ban action does.
func pub(t *testing.T, h *lab.Host, topic, payload string) {
	t.Helper()
	must[string](t)(h.Exec("mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t", topic, "-m", payload))
}

// members returns a set's members by prefix.
func members(t *testing.T, h *lab.Host, set string) map[string]lab.Member {
	t.Helper()
	ms := must[[]lab.Member](t)(h.Members(set))
	out := make(map[string]lab.Member, len(ms))
	for _, m := range ms {
		out[m.Prefix] = m
	}
	return out
}

// checkTimeout fails unless the member's remaining timeout is in (max-slack, max];
// max 0 means permanent.
func checkTimeout(t *testing.T, set string, m map[string]lab.Member, prefix string, max, slack int) {
	t.Helper()
	got, ok := m[prefix]
	switch {
	case !ok:
		t.Errorf("%s: %s missing", set, prefix)
	case max == 0 && got.Timeout != 0:
		t.Errorf("%s: %s timeout %d, want permanent (0)", set, prefix, got.Timeout)
	case max > 0 && (got.Timeout > max || got.Timeout <= max-slack):
		t.Errorf("%s: %s timeout %d, want in (%d, %d]", set, prefix, got.Timeout, max-slack, max)
	}
}

// waitMember polls until set holds prefix.
func waitMember(t *testing.T, h *lab.Host, set, prefix string, timeout time.Duration) {
	t.Helper()
	err := lab.Eventually(timeout, func() (bool, string) {
		p, err := h.Prefixes(set)
		if err != nil {
			return false, err.Error()
		}
		return slices.Contains(p, prefix), fmt.Sprintf("%s on %s has %d members, not %s", set, h.Name, len(p), prefix)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// killAtEnd kills p when the test ends, before the test's temporary folder
// is removed: newLab registers the lab's Close before t.TempDir's removal,
// so the lab would kill a broker only after its store had been pulled from
// under it (RemoveAll then fails on the files it writes meanwhile).
func killAtEnd(t *testing.T, p **lab.Proc) {
	t.Cleanup(func() { (*p).Kill() })
}

// hubAndHost starts mosquitto (persistence on) on a hub and vallum on a
// host bridging to it with -t blacklist.
func hubAndHost(t *testing.T, extra ...string) (hub, host *lab.Host, mosq, v *lab.Proc, dir string) {
	t.Helper()
	l, dir := newLab(t)
	hub, host = addHost(t, l, "hub"), addHost(t, l, "host")
	mosq = must[*lab.Proc](t)(hub.StartMosquittoWith(dir, 1883, true, ""))
	killAtEnd(t, &mosq)
	args := append([]string{"-h", hub.Addr4, "-t", "blacklist"}, extra...)
	v = must[*lab.Proc](t)(host.StartVallum(dir, vallumBin, args...))
	return hub, host, mosq, v, dir
}

// TestBridgeUserFlow is vallumd's user flow with exact members and
// timeouts in both families, the bare topic, and a multi-line message
// whose bad lines are refused alone while the daemon keeps running.
func TestBridgeUserFlow(t *testing.T) {
	hub, host, _, v, _ := hubAndHost(t)
	for _, m := range []struct{ topic, payload string }{
		{"blacklist/add", "203.0.113.7"},
		{"blacklist/add", "2001:db8::7 timeout 600"},
		{"blacklist/add", "198.51.100.0/24\n203.0.113.9 timeout 3600"},
		{"blacklist/del", "203.0.113.7"},
		{"blacklist", "192.0.2.44"},
		{"blacklist", "2001:db8:1::/48 timeout 0"},
	} {
		pub(t, hub, m.topic, m.payload)
	}
	waitPrefixes(t, host, "blacklist", "192.0.2.44", "198.51.100.0/24", "203.0.113.9")
	waitPrefixes(t, host, "blacklist6", "2001:db8:1::/48", "2001:db8::7")
	m4, m6 := members(t, host, "blacklist"), members(t, host, "blacklist6")
	checkTimeout(t, "blacklist", m4, "203.0.113.9", 3600, 60)
	checkTimeout(t, "blacklist", m4, "198.51.100.0/24", 0, 0)
	checkTimeout(t, "blacklist", m4, "192.0.2.44", 0, 0)
	checkTimeout(t, "blacklist6", m6, "2001:db8::7", 600, 60)
	checkTimeout(t, "blacklist6", m6, "2001:db8:1::/48", 0, 0)

	// One message, good lines around bad ones: a word, a negative timeout,
	// a prefix length out of range, an IPv6 line among IPv4 ones,
	// and blank lines. The good lines apply; the daemon stays up.
	pub(t, hub, "blacklist/add", "203.0.113.20\nnot-an-address\n\n203.0.113.21 timeout -5\n  203.0.113.22 timeout 120  \n198.51.100.1/33\n2001:db8::22")
	pub(t, hub, "blacklist/add", "203.0.113.23") // after the bad message: still applied
	waitPrefixes(t, host, "blacklist", "192.0.2.44", "198.51.100.0/24", "203.0.113.9", "203.0.113.20", "203.0.113.22", "203.0.113.23")
	waitPrefixes(t, host, "blacklist6", "2001:db8:1::/48", "2001:db8::7", "2001:db8::22")
	checkTimeout(t, "blacklist", members(t, host, "blacklist"), "203.0.113.22", 120, 30)
	if v.Exited() {
		t.Fatalf("vallum exited after a bad message: %v\n%s", v.Err(), v.Output())
	}
	out := v.Output()
	for _, bad := range []string{"not-an-address", "203.0.113.21 timeout -5", "198.51.100.1/33"} {
		if !strings.Contains(out, bad) {
			t.Errorf("no log line names the refused line %q:\n%s", bad, out)
		}
	}
}

// TestBridgeInterleaved10k sends 10,000 adds and dels of 100 addresses in
// a seeded random order at QoS 1 and checks the set ends exactly at the
// last op of each address.
func TestBridgeInterleaved10k(t *testing.T) {
	hub, host, _, _, _ := hubAndHost(t)
	c := must[mqtt.Client](t)(hub.Connect(1883, mqtt.NewClientOptions().SetClientID("e2e-interleaved").SetCleanSession(true)))
	defer c.Disconnect(250)

	rng := rand.New(rand.NewPCG(42, 7))
	in := map[string]bool{}
	toks := make([]mqtt.Token, 0, 10000)
	for range 10000 {
		addr := fmt.Sprintf("198.18.%d.%d", rng.IntN(2), 1+rng.IntN(50))
		topic, payload := "blacklist/add", addr
		switch rng.IntN(5) {
		case 0, 1:
			topic = "blacklist/del"
		case 2:
			payload += " timeout 3600" // refreshes the entry, still a member
		}
		in[addr] = topic == "blacklist/add"
		toks = append(toks, c.Publish(topic, 1, false, payload))
	}
	// A sentinel after the stream: the bridge applies in order, so once
	// it is in the set, every message before it has been applied.
	toks = append(toks, c.Publish("blacklist/add", 1, false, "192.0.2.250"))
	for i, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: not acknowledged: %v", i, tok.Error())
		}
	}
	want := []string{"192.0.2.250"}
	for a, ok := range in {
		if ok {
			want = append(want, a)
		}
	}
	if len(want) < 10 || len(want) > 95 {
		t.Fatalf("sequence too one-sided to test anything: %d members expected", len(want))
	}
	waitMember(t, host, "blacklist", "192.0.2.250", 45*time.Second)
	slices.Sort(want)
	got := must[[]string](t)(host.Prefixes("blacklist"))
	if !slices.Equal(got, want) {
		t.Fatalf("after 10,000 interleaved ops: %d members, want %d\nextra %v\nmissing %v",
			len(got), len(want), diff(got, want), diff(want, got))
	}
}

// diff returns what a holds and b does not.
func diff(a, b []string) []string {
	var d []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			d = append(d, x)
		}
	}
	return d
}

// TestBridgeBrokerRestart restarts mosquitto (persistence on) in the
// middle of 5,000 QoS 1 adds from a persistent-session publisher; every
// add must reach the kernel set.
func TestBridgeBrokerRestart(t *testing.T) {
	hub, host, mosq, v, dir := hubAndHost(t)
	const n = 5000
	o := mqtt.NewClientOptions().SetClientID("e2e-restart-pub").SetCleanSession(false).
		SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).
		SetAutoReconnect(true).SetMaxReconnectInterval(500 * time.Millisecond).
		SetWriteTimeout(60 * time.Second)
	c := must[mqtt.Client](t)(hub.Connect(1883, o))
	defer c.Disconnect(250)

	// Batches of 100, each acknowledged before the next. After half the
	// stream the publisher waits for the go-ahead, which comes together
	// with the SIGTERM, so the second half meets the broker going down,
	// being down and coming back.
	half, resume := make(chan struct{}), make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		var failed []string
		for b := 0; b < n/100; b++ {
			if b == n/200 {
				close(half)
				<-resume
			}
			toks := make([]mqtt.Token, 100)
			for i := range toks {
				k := b*100 + i
				toks[i] = c.Publish("blacklist/add", 1, false, fmt.Sprintf("198.18.%d.%d", k/250, 1+k%250))
			}
			for i, tok := range toks {
				if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
					failed = append(failed, fmt.Sprintf("%d: %v", b*100+i, tok.Error()))
				}
			}
		}
		if len(failed) > 0 {
			errs <- fmt.Errorf("publisher: %d tokens failed (paho resends them from its store), first %s", len(failed), failed[0])
			return
		}
		errs <- nil
	}()

	<-half
	waitCount(t, host, "blacklist", 1000, 30*time.Second)
	close(resume)
	if err := mosq.Stop(); err != nil {
		t.Fatalf("mosquitto on SIGTERM: %v\n%s", err, mosq.Output())
	}
	t.Logf("mosquitto stopped with %d of %d adds in the set", len(must[[]string](t)(host.Prefixes("blacklist"))), n)
	if out := mosq.Output(); strings.Contains(out, "Error") {
		t.Fatalf("mosquitto could not save its state:\n%s", out)
	}
	mosq = must[*lab.Proc](t)(hub.StartMosquittoWith(dir, 1883, true, ""))
	t.Logf("mosquitto restarted with %d of %d adds in the set", len(must[[]string](t)(host.Prefixes("blacklist"))), n)
	select {
	case err := <-errs:
		if err != nil {
			t.Log(err)
		}
	case <-time.After(50 * time.Second):
		t.Fatal("publisher did not finish within 50 s of the restart")
	}
	if err := lab.Eventually(30*time.Second, func() (bool, string) {
		p, err := host.Prefixes("blacklist")
		if err != nil {
			return false, err.Error()
		}
		return len(p) == n, fmt.Sprintf("%d of %d adds in the set", len(p), n)
	}); err != nil {
		t.Fatalf("%v\nvallum:\n%s", err, v.Output())
	}
	if v.Exited() {
		t.Fatalf("vallum exited across the broker restart: %v", v.Err())
	}
}

// waitCount polls until set holds at least n members.
func waitCount(t *testing.T, h *lab.Host, set string, n int, timeout time.Duration) {
	t.Helper()
	err := lab.Eventually(timeout, func() (bool, string) {
		p, err := h.Prefixes(set)
		if err != nil {
			return false, err.Error()
		}
		return len(p) >= n, fmt.Sprintf("%s on %s has %d members, want at least %d", set, h.Name, len(p), n)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBridgeSignals: SIGHUP leaves the daemon running and applying;
// SIGTERM ends it with exit 0 and the sets keep their members.
func TestBridgeSignals(t *testing.T) {
	hub, host, _, v, _ := hubAndHost(t)
	pub(t, hub, "blacklist/add", "203.0.113.30\n2001:db8::30")
	waitPrefixes(t, host, "blacklist", "203.0.113.30")
	v.Signal(syscall.SIGHUP)
	if err := v.WaitLog("SIGHUP", 10*time.Second); err != nil {
		t.Error(err)
	}
	pub(t, hub, "blacklist/add", "203.0.113.31")
	waitPrefixes(t, host, "blacklist", "203.0.113.30", "203.0.113.31")
	if v.Exited() {
		t.Fatalf("vallum exited on SIGHUP: %v", v.Err())
	}
	if err := v.Stop(); err != nil {
		t.Fatalf("vallum on SIGTERM: %v, want exit 0\n%s", err, v.Output())
	}
	waitPrefixes(t, host, "blacklist", "203.0.113.30", "203.0.113.31")
	waitPrefixes(t, host, "blacklist6", "2001:db8::30")
}

// runVallum runs vallum in h to its end (at most 30 s) and returns its
// output and exit error.
func runVallum(t *testing.T, h *lab.Host, dir string, args ...string) (string, error) {
	t.Helper()
	p := must[*lab.Proc](t)(h.StartVallumNoWait(dir, vallumBin, args...))
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		p.Kill()
		t.Fatalf("vallum %v still running after 30 s, want it to exit:\n%s", args, p.Output())
	}
	return p.Output(), p.Err()
}

// TestBridgeNoCreate: with --no-create a missing set is fatal, named in
// the error; a set the user made (no comment support, no counters) is
// used as it is and never altered.
func TestBridgeNoCreate(t *testing.T) {
	l, dir := newLab(t)
	hub, host := addHost(t, l, "hub"), addHost(t, l, "host")
	must[*lab.Proc](t)(hub.StartMosquitto(dir, 1883, true))

	out, err := runVallum(t, host, dir, "-h", hub.Addr4, "-t", "blacklist", "--no-create")
	if err == nil {
		t.Fatalf("--no-create without the sets: exit 0, want non-zero:\n%s", out)
	}
	if line := errorLine(out); !strings.Contains(line, `"blacklist"`) {
		t.Errorf("--no-create: error line %q does not name the set:\n%s", line, out)
	}
	if _, err := host.Exec("ipset", "list", "-n", "blacklist"); err == nil {
		t.Errorf("--no-create created the set")
	}

	must[string](t)(host.Exec("ipset", "create", "blacklist", "hash:net", "timeout", "0"))
	must[string](t)(host.Exec("ipset", "create", "blacklist6", "hash:net", "family", "inet6"))
	before := header(t, host, "blacklist")
	before6 := header(t, host, "blacklist6")
	v := must[*lab.Proc](t)(host.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-t", "blacklist", "--no-create"))
	pub(t, hub, "blacklist/add", "203.0.113.40 timeout 300\n198.51.100.0/25\n2001:db8::40")
	waitPrefixes(t, host, "blacklist", "198.51.100.0/25", "203.0.113.40")
	waitPrefixes(t, host, "blacklist6", "2001:db8::40")
	checkTimeout(t, "blacklist", members(t, host, "blacklist"), "203.0.113.40", 300, 30)
	if got := header(t, host, "blacklist"); got != before {
		t.Errorf("set header changed:\nbefore %s\nafter  %s", before, got)
	}
	if got := header(t, host, "blacklist6"); got != before6 {
		t.Errorf("set header changed:\nbefore %s\nafter  %s", before6, got)
	}
	if err := v.Stop(); err != nil {
		t.Errorf("vallum on SIGTERM: %v\n%s", err, v.Output())
	}
	if got := header(t, host, "blacklist"); got != before {
		t.Errorf("set header changed after stop:\nbefore %s\nafter  %s", before, got)
	}
}

// errorLine is the "vallum: ..." line a fatal error prints last.
func errorLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "vallum: ") {
			return l
		}
	}
	return ""
}

// header is the set's create line from ipset save.
func header(t *testing.T, h *lab.Host, set string) string {
	t.Helper()
	out := must[string](t)(h.Exec("ipset", "save", set))
	line, _, _ := strings.Cut(out, "\n")
	return line
}

// TestBridgeBadPassword: mosquitto with a password file refuses vallum's
// wrong password; vallum exits non-zero with a line that says so.
func TestBridgeBadPassword(t *testing.T) {
	l, dir := newLab(t)
	hub, host := addHost(t, l, "hub"), addHost(t, l, "host")
	pw := filepath.Join(dir, "mosquitto.passwd")
	must[string](t)(hub.Exec("mosquitto_passwd", "-c", "-b", pw, "edge", "right-password"))
	// The last allow_anonymous wins in mosquitto's configuration.
	must[*lab.Proc](t)(hub.StartMosquittoWith(dir, 1883, true, "allow_anonymous false\npassword_file "+pw+"\n"))
	wrong, right := filepath.Join(dir, "wrong"), filepath.Join(dir, "right")
	os.WriteFile(wrong, []byte("wrong-password\n"), 0o600)
	os.WriteFile(right, []byte("right-password\n"), 0o600)

	out, err := runVallum(t, host, dir, "-h", hub.Addr4, "-t", "blacklist", "-u", "edge", "--password-file", wrong)
	if err == nil {
		t.Fatalf("wrong password: exit 0, want non-zero:\n%s", out)
	}
	if line := strings.ToLower(errorLine(out)); !strings.Contains(line, "refused") || !strings.Contains(line, "auth") {
		t.Errorf("wrong password: error line %q is not clear (want 'refused' and the broker's reason):\n%s", line, out)
	}

	// The right password works: the failure above was the password.
	must[*lab.Proc](t)(host.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-t", "blacklist", "-u", "edge", "--password-file", right))
	must[string](t)(hub.Exec("mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-u", "edge", "-P", "right-password",
		"-t", "blacklist/add", "-m", "203.0.113.45"))
	waitPrefixes(t, host, "blacklist", "203.0.113.45")
}
