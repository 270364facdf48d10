//go:build e2e

package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
)

const hostileMetrics = 9101

// hostileCase is one bad message (or a few) and what vallum must make of it.
type hostileCase struct {
	name     string
	topic    string
	payload  string
	retained bool
	act      func(t *testing.T) // instead of a publish, when set
	refused  map[string]float64 // vallum_refused_total{reason} must grow by this much
	errs     map[string]float64 // vallum_errors_total{kind} must grow by this much
	logs     string             // a line of vallum's log must contain this (after the case)
	notIn    []string           // must not be in set blacklist
}

// TestHostileInput sends every kind of bad input through mosquitto into a
// running vallum and checks after each one, as a user would: the kernel set
// holds exactly what it should, vallum is still running and applies the
// next good ban, the refusal is logged and counted.
func TestHostileInput(t *testing.T) {
	l, dir := newLab(t)
	hub, host := addHost(t, l, "hub"), addHost(t, l, "host")
	must[*lab.Proc](t)(hub.StartMosquitto(dir, 1883, false))

	// A resolver that only the test sees: any DNS query vallum makes for a
	// payload lands here.
	undo := must[func()](t)(host.SetResolver(hub.Addr4))
	t.Cleanup(undo)
	dns := must[net.PacketConn](t)(hub.ListenUDP(hub.Addr4 + ":53"))
	defer dns.Close()

	// A set made by the user, nearly full.
	must[string](t)(host.Exec("ipset", "create", "full4", "hash:net", "family", "inet", "maxelem", "4", "timeout", "0", "comment"))
	// A v4 set named as a list's v6 set is a misconfiguration: vallum
	// refuses to start, and says which set.
	must[string](t)(host.Exec("ipset", "create", "bl4x", "hash:net", "family", "inet", "timeout", "0", "comment"))
	bad := must[*lab.Proc](t)(host.StartVallumNoWait(dir, vallumBin, "-h", hub.Addr4, "-t", "wf=wf4,bl4x"))
	select {
	case <-bad.Done():
		if bad.Err() == nil || !strings.Contains(bad.Output(), `"bl4x"`) || !strings.Contains(bad.Output(), "family") {
			t.Errorf("vallum with a v4 set as its v6 set: %v, want exit non-zero naming bl4x and the family:\n%s", bad.Err(), bad.Output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("vallum with a v4 set as its v6 set still runs after 30 s:\n%s", bad.Output())
	}
	pub := must[mqtt.Client](t)(hub.Connect(1883, mqtt.NewClientOptions().SetClientID("hostile-pub")))
	defer pub.Disconnect(100)
	// Junk retained on event topics before vallum starts: replayed at its
	// subscribe, it must be refused, never applied.
	publishRetained(t, pub, "blacklist/add", "192.0.2.12")
	publishRetained(t, pub, "blacklist", "\x00garbage")

	v := must[*lab.Proc](t)(host.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-t", "blacklist",
		"-t", "full=full4,full6", "--allow", "198.18.0.0/15",
		"--metrics", fmt.Sprintf("127.0.0.1:%d", hostileMetrics)))
	waitCounter(t, host, `vallum_refused_total{reason="retained_event"}`, 2)

	tenMB := strings.Repeat("192.0.2.5\n", 1<<20) // 10 MiB of valid lines: refused whole
	cases := []hostileCase{
		{name: "NUL and binary", topic: "blacklist/add", payload: "\x00\x01\xff\xfe1.2.3.4\x00\n\x1b[31mred",
			refused: map[string]float64{"bad_line": 2}, logs: "reason=bad_line"},
		{name: "non-UTF-8", topic: "blacklist/add", payload: "\xc3\x28192.0.2.1",
			refused: map[string]float64{"bad_line": 1}, notIn: []string{"192.0.2.1"}},
		{name: "very long line", topic: "blacklist/add", payload: "192.0.2.2 timeout 1" + strings.Repeat(" ", 200) + "x",
			refused: map[string]float64{"bad_line": 1}, notIn: []string{"192.0.2.2"}},
		{name: "10 MB payload", topic: "blacklist/add", payload: tenMB,
			refused: map[string]float64{"payload_too_large": 1}, logs: "reason=payload_too_large", notIn: []string{"192.0.2.5"}},
		{name: "leading zeros", topic: "blacklist/add", payload: "192.000.002.003\n010.1.2.3",
			refused: map[string]float64{"bad_line": 2}, notIn: []string{"192.0.2.3", "10.1.2.3", "8.1.2.3"}},
		{name: "zone", topic: "blacklist/add", payload: "fe80::1%eth0\n2001:db8::1%eth0",
			refused: map[string]float64{"bad_line": 2}},
		{name: "ports", topic: "blacklist/add", payload: "1.2.3.4:22\n[2001:db8::1]:22",
			refused: map[string]float64{"bad_line": 2}, notIn: []string{"1.2.3.4"}},
		{name: "hostname", topic: "blacklist/add", payload: "example.com\nlocalhost\ndns.google timeout 60",
			refused: map[string]float64{"bad_line": 3}},
		{name: "negative timeout", topic: "blacklist/add", payload: "192.0.2.9 timeout -5\n192.0.2.9 timeout 1e9\n192.0.2.9 timeout 0x10",
			refused: map[string]float64{"bad_line": 3}, notIn: []string{"192.0.2.9"}},
		{name: "unknown sub-topic", topic: "blacklist/flush", payload: "192.0.2.0/24"}, // not subscribed: never seen
		{name: "unknown state sub-topic", topic: "blacklist/ban/not-an-address", payload: "{}", retained: true,
			refused: map[string]float64{"bad_topic": 1}, logs: "reason=bad_topic"},
		{name: "oversized topic", topic: "blacklist/ban/" + strings.Repeat("1", 65000), payload: "{}",
			refused: map[string]float64{"bad_topic": 1}},
		{name: "wildcard topic by a client", act: func(t *testing.T) { rawWildcardPublish(t, hub) }},
		{name: "state with garbage JSON", topic: "blacklist/ban/192.0.2.13", payload: "{\"expires\":\"soon\"", retained: true,
			refused: map[string]float64{"bad_state": 1}, logs: "reason=bad_state", notIn: []string{"192.0.2.13"}},
		{name: "retained event while running", act: func(t *testing.T) {
			// Live, a retained publish reaches subscribers as a normal event;
			// only its replay is refused (checked at start).
		}},
		{name: "wrong family", act: func(t *testing.T) {
			// The user swaps the v6 set for a v4 one while vallum runs.
			must[string](t)(host.Exec("sh", "-c", "ipset destroy blacklist6 && ipset create blacklist6 hash:net family inet timeout 0 comment"))
			// Both adds are refused as wrong_family, the first one too
			// (the header is read again at the kernel's refusal).
			hsend(t, pub, "blacklist/add", "2001:db8::5")
			hsend(t, pub, "blacklist/add", "2001:db8::6")
		}, errs: map[string]float64{"wrong_family": 2}, logs: "address family does not match"},
		{name: "full set", topic: "full/add", payload: "192.0.2.21\n192.0.2.22\n192.0.2.23\n192.0.2.24\n192.0.2.25",
			errs: map[string]float64{"set_full": 1}},
		{name: "set destroyed", act: func(t *testing.T) {
			must[string](t)(host.Exec("ipset", "destroy", "blacklist"))
		}, logs: "set was missing and is created again"},
		{name: "0.0.0.0/0", topic: "blacklist/add", payload: "0.0.0.0/0", refused: map[string]float64{"too_broad": 1}, logs: "reason=too_broad"},
		{name: "::/0", topic: "blacklist/add", payload: "::/0", refused: map[string]float64{"too_broad": 1}},
		{name: "/7", topic: "blacklist/add", payload: "202.0.0.0/7", refused: map[string]float64{"too_broad": 1}, notIn: []string{"202.0.0.0/7"}},
		{name: "loopback", topic: "blacklist/add", payload: "127.0.0.1", refused: map[string]float64{"allowlisted": 1}, logs: "reason=allowlisted"},
		{name: "own address", topic: "blacklist/add", payload: host.Addr4 + "\n" + host.Addr6,
			refused: map[string]float64{"allowlisted": 2}, notIn: []string{host.Addr4}},
		{name: "broker address", topic: "blacklist/add", payload: hub.Addr4, refused: map[string]float64{"allowlisted": 1}, notIn: []string{hub.Addr4}},
		{name: "/16 over own address", topic: "blacklist/add", payload: "10.77.0.0/16", refused: map[string]float64{"allowlisted": 1}, notIn: []string{"10.77.0.0/16"}},
		{name: "configured --allow", topic: "blacklist/add", payload: "198.18.5.5\n198.19.0.0/24",
			refused: map[string]float64{"allowlisted": 2}, notIn: []string{"198.18.5.5"}},
		{name: "state for an allowlisted address", topic: "blacklist/ban/127.0.0.2", retained: true,
			payload: fmt.Sprintf(`{"at":%d,"expires":0}`, time.Now().UnixMilli()), refused: map[string]float64{"allowlisted": 1}},
	}
	var want []string // what set blacklist must hold
	for i, c := range cases {
		// Pace the cases under the refusal log's rate (20 lines/s), so
		// that each one's line is written; the flood case below checks
		// the limit itself.
		time.Sleep(200 * time.Millisecond)
		t.Run(c.name, func(t *testing.T) {
			before := must[map[string]float64](t)(host.Metrics(hostileMetrics))
			logBefore := len(v.Output())
			start := time.Now()
			if c.act != nil {
				c.act(t)
			}
			if c.topic != "" {
				tok := pub.Publish(c.topic, 1, c.retained, []byte(c.payload))
				if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
					t.Fatalf("publish: %v", tok.Error())
				}
			}
			// The next good ban lands: vallum is alive and applying.
			good := fmt.Sprintf("203.0.113.%d", i+1)
			hsend(t, pub, "blacklist/add", good)
			if c.name == "set destroyed" {
				want = nil
			}
			want = append(want, good)
			waitPrefixes(t, host, "blacklist", want...)
			t.Logf("refused and next ban applied in %v", time.Since(start).Round(time.Millisecond))
			if v.Exited() {
				t.Fatalf("vallum exited: %v\n%s", v.Err(), v.Output())
			}
			for reason, n := range c.refused {
				waitCounter(t, host, fmt.Sprintf(`vallum_refused_total{reason=%q}`, reason), before[fmt.Sprintf(`vallum_refused_total{reason=%q}`, reason)]+n)
			}
			for kind, n := range c.errs {
				waitCounter(t, host, fmt.Sprintf(`vallum_errors_total{kind=%q}`, kind), before[fmt.Sprintf(`vallum_errors_total{kind=%q}`, kind)]+n)
			}
			if c.logs != "" {
				if err := lab.Eventually(5*time.Second, func() (bool, string) {
					return strings.Contains(v.Output()[logBefore:], c.logs), "log has no " + c.logs
				}); err != nil {
					t.Errorf("%v:\n%s", err, v.Output()[logBefore:])
				}
			}
			if t.Failed() {
				t.Logf("vallum's log during the case:\n%s", v.Output()[logBefore:])
			}
			got := must[[]string](t)(host.Prefixes("blacklist"))
			for _, p := range c.notIn {
				if slices.Contains(got, p) {
					t.Errorf("%s is in set blacklist: %v", p, got)
				}
			}
		})
	}
	// A flood of distinct garbage is counted in full but logged at most
	// about 20 lines a second.
	t.Run("refusal log is rate limited", func(t *testing.T) {
		before := must[map[string]float64](t)(host.Metrics(hostileMetrics))
		logBefore := strings.Count(v.Output(), "\n")
		var junk strings.Builder
		for i := range 5000 {
			fmt.Fprintf(&junk, "junk-%d\n", i)
		}
		hsend(t, pub, "blacklist/add", junk.String())
		waitCounter(t, host, `vallum_refused_total{reason="bad_line"}`, before[`vallum_refused_total{reason="bad_line"}`]+5000)
		if n := strings.Count(v.Output(), "\n") - logBefore; n > 40 {
			t.Errorf("5000 refusals wrote %d log lines, want at most about 20 a second", n)
		}
	})
	// After everything: the other sets hold exactly what they should.
	if got := must[[]string](t)(host.Prefixes("blacklist6")); len(got) != 0 {
		t.Errorf("blacklist6, now a v4 set = %v, want empty (the v6 address refused)", got)
	}
	if got := must[[]string](t)(host.Prefixes("full4")); len(got) != 4 {
		t.Errorf("full4 (maxelem 4) = %v, want 4 members", got)
	}
	// No DNS query left vallum for any payload.
	dns.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 512)
	if n, from, err := dns.ReadFrom(buf); err == nil {
		t.Errorf("vallum sent a DNS query (%d bytes from %v): %q", n, from, buf[:n])
	}
	// Hostile bytes never reach the log raw: no NUL, no escape, no invalid UTF-8.
	logText := v.Output()
	if strings.ContainsAny(logText, "\x00\x1b") || !isUTF8(logText) {
		t.Errorf("vallum's log carries raw control bytes or invalid UTF-8")
	}
	if len(logText) > 200_000 {
		t.Errorf("vallum's log is %d bytes after %d hostile cases: refusals are not bounded", len(logText), len(cases))
	}
	if err := v.Stop(); err != nil {
		t.Errorf("vallum on SIGTERM: %v, want exit 0", err)
	}
}

// TestWrongFamilyFirstOp: a set swapped for one of the other family while
// vallum runs; the very first refused op should already say so.
func TestWrongFamilyFirstOp(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "host")
	must[*lab.Proc](t)(h.StartMosquitto(dir, 1883, false))
	must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-h", "127.0.0.1", "-t", "blacklist",
		"--metrics", fmt.Sprintf("127.0.0.1:%d", hostileMetrics)))
	pub := must[mqtt.Client](t)(h.Connect(1883, mqtt.NewClientOptions().SetClientID("family-pub")))
	defer pub.Disconnect(100)
	must[string](t)(h.Exec("sh", "-c", "ipset destroy blacklist6 && ipset create blacklist6 hash:net family inet timeout 0 comment"))
	hsend(t, pub, "blacklist/add", "2001:db8::5")
	waitCounter(t, h, `vallum_errors_total{kind="wrong_family"}`, 1)
}

func isUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func publishRetained(t *testing.T, c mqtt.Client, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, true, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish retained %s: %v", topic, tok.Error())
	}
}

// waitCounter polls vallum's metrics until series reaches want, and fails
// if it goes past it.
func waitCounter(t *testing.T, h *lab.Host, series string, want float64) {
	t.Helper()
	var got float64
	err := lab.Eventually(10*time.Second, func() (bool, string) {
		m, err := h.Metrics(hostileMetrics)
		if err != nil {
			return false, err.Error()
		}
		got = m[series]
		return got >= want, fmt.Sprintf("%s = %v, want %v", series, got, want)
	})
	if err != nil {
		t.Error(err)
	} else if got != want {
		t.Errorf("%s = %v, want %v", series, got, want)
	}
}

// rawWildcardPublish sends a PUBLISH to "blacklist/#", which no MQTT
// client library will send: the broker must drop that client, and vallum
// see nothing.
func rawWildcardPublish(t *testing.T, hub *lab.Host) {
	t.Helper()
	c := must[net.Conn](t)(hub.Dial(1883))
	defer c.Close()
	str := func(s string) []byte { return binary.BigEndian.AppendUint16(nil, uint16(len(s))) }
	var connect bytes.Buffer
	connect.Write(append(str("MQTT"), "MQTT"...))
	connect.Write([]byte{4, 0x02, 0, 60}) // level 4, clean session, keepalive 60
	connect.Write(append(str("wildcard-pub"), "wildcard-pub"...))
	topic := "blacklist/#"
	var publish bytes.Buffer
	publish.Write(append(str(topic), topic...))
	publish.WriteString("192.0.2.66")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(append([]byte{0x10, byte(connect.Len())}, connect.Bytes()...))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK %x: %v", ack, err)
	}
	c.Write(append([]byte{0x30, byte(publish.Len())}, publish.Bytes()...))
	if _, err := c.Read(ack); err == nil {
		t.Errorf("broker kept the connection of a client that published to a wildcard topic")
	}
}

// TestOwnAddressAddedAfterStart: an address given to the host while vallum
// runs is protected at once (netlink), as is a prefix over it.
func TestOwnAddressAddedAfterStart(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "host")
	must[*lab.Proc](t)(h.StartMosquitto(dir, 1883, false))
	v := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-h", "127.0.0.1", "-t", "blacklist",
		"--metrics", fmt.Sprintf("127.0.0.1:%d", hostileMetrics)))
	pub := must[mqtt.Client](t)(h.Connect(1883, mqtt.NewClientOptions().SetClientID("own-pub")))
	defer pub.Disconnect(100)
	hsend(t, pub, "blacklist/add", "10.77.99.5") // before: not ours, banned
	waitPrefixes(t, h, "blacklist", "10.77.99.5")
	hsend(t, pub, "blacklist/del", "10.77.99.5")
	waitPrefixes(t, h, "blacklist")

	must[string](t)(h.Exec("ip", "addr", "add", "10.77.99.5/32", "dev", "eth0"))
	hsend(t, pub, "blacklist/add", "10.77.99.5\n10.77.99.0/24")
	hsend(t, pub, "blacklist/add", "203.0.113.1")
	waitPrefixes(t, h, "blacklist", "203.0.113.1")
	waitCounter(t, h, `vallum_refused_total{reason="allowlisted"}`, 2)
	if !strings.Contains(v.Output(), "10.77.99.5") {
		t.Errorf("refusal of the new own address not logged:\n%s", v.Output())
	}

	// Removed again: bannable again.
	must[string](t)(h.Exec("ip", "addr", "del", "10.77.99.5/32", "dev", "eth0"))
	hsend(t, pub, "blacklist/add", "10.77.99.5")
	waitPrefixes(t, h, "blacklist", "10.77.99.5", "203.0.113.1")
}

// TestOnlyNetAdmin runs vallum as nobody with CAP_NET_ADMIN alone: bans
// land. Without the capability it exits non-zero and says what it needs.
func TestOnlyNetAdmin(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "host")
	must[*lab.Proc](t)(h.StartMosquitto(dir, 1883, false))
	// nobody must reach the binary and own its data directory.
	pub := must[string](t)(os.MkdirTemp("", "vallum-nobody"))
	t.Cleanup(func() { os.RemoveAll(pub) })
	os.Chmod(pub, 0o755)
	bin := filepath.Join(pub, "vallum")
	must[[]byte](t)(exec.Command("cp", vallumBin, bin).CombinedOutput())
	os.Chmod(bin, 0o755)
	for _, d := range []string{"data", "data-nocap"} {
		os.Mkdir(filepath.Join(pub, d), 0o700)
		os.Chown(filepath.Join(pub, d), 65534, 65534)
	}
	setpriv := func(caps string, data string) []string {
		return []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=" + caps, "--ambient-caps=" + caps,
			bin, "--data-dir", filepath.Join(pub, data), "-h", "127.0.0.1", "-t", "blacklist"}
	}
	v := must[*lab.Proc](t)(h.Start(dir, "setpriv", setpriv("+net_admin", "data")...))
	if err := v.WaitLog("subscribed and synced", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := must[string](t)(h.Exec("sh", "-c", fmt.Sprintf("grep -E '^(Uid|CapEff)' /proc/%d/status", v.Pid()))); !strings.Contains(st, "65534") || !strings.Contains(st, "0000000000001000") {
		t.Errorf("vallum runs with %s, want uid 65534 and CapEff = CAP_NET_ADMIN only", st)
	}
	c := must[mqtt.Client](t)(h.Connect(1883, mqtt.NewClientOptions().SetClientID("cap-pub")))
	defer c.Disconnect(100)
	hsend(t, c, "blacklist/add", "203.0.113.50")
	waitPrefixes(t, h, "blacklist", "203.0.113.50")
	if err := v.Stop(); err != nil {
		t.Errorf("vallum on SIGTERM: %v\n%s", err, v.Output())
	}

	n := must[*lab.Proc](t)(h.Start(dir, "setpriv", setpriv("-all", "data-nocap")...))
	select {
	case <-n.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("vallum without CAP_NET_ADMIN still running after 30 s:\n%s", n.Output())
	}
	if n.Err() == nil {
		t.Errorf("vallum without CAP_NET_ADMIN exited 0, want non-zero:\n%s", n.Output())
	}
	if !strings.Contains(n.Output(), "CAP_NET_ADMIN") {
		t.Errorf("vallum without CAP_NET_ADMIN does not say it needs it:\n%s", n.Output())
	}
}

// hsend publishes at QoS 1 and waits for the broker's ack.
func hsend(t *testing.T, c mqtt.Client, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}
