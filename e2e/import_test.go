//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// importFrom runs `vallum import` (or any CLI command) in h against the hub
// and returns its output; a failure ends the test.
func importFrom(t *testing.T, h *lab.Host, b *hub, dir string, args ...string) string {
	t.Helper()
	args = append(args, "-h", b.h.Addr4, "--data-dir", filepath.Join(dir, h.Name+"-cli"))
	out, err := h.Exec(vallumBin, args...)
	if err != nil {
		t.Fatalf("vallum %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// serveFeeds serves files by path from inside h, as a feed's web site
// would, and returns the base URL.
func serveFeeds(t *testing.T, h *lab.Host, files map[string]string) string {
	t.Helper()
	l, err := h.ListenTCP(h.Addr4 + ":8080")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + h.Addr4 + ":8080"
}

// listAt reads each ban's `at` as `vallum list -o json` prints it.
func listAt(t *testing.T, h *lab.Host, b *hub, dir string) map[string]int64 {
	t.Helper()
	out := importFrom(t, h, b, dir, "list", root, "-o", "json")
	at := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var j struct {
			Prefix string `json:"prefix"`
			At     int64  `json:"at"`
		}
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			t.Fatalf("list -o json line %q: %v", line, err)
		}
		at[j.Prefix] = j.At
	}
	return at
}

// watchList subscribes to everything under the list, waits until the
// retained messages stop coming, and returns a func that stops and returns
// what came since, one line per message (topic, then payload or "(empty)";
// a state's payload is left out: it holds the time), sorted.
func watchList(t *testing.T, b *hub) func() []string {
	t.Helper()
	var mu sync.Mutex
	var got []string
	last := time.Now()
	c := must[mqtt.Client](t)(b.h.Connect(hubPort, mqtt.NewClientOptions().SetClientID("import-watch")))
	tok := c.Subscribe(root+"/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		line := m.Topic()
		switch {
		case len(m.Payload()) == 0:
			line += " (empty)"
		case !strings.Contains(m.Topic(), "/ban/"):
			line += " " + strings.TrimSpace(string(m.Payload()))
		}
		mu.Lock()
		got, last = append(got, line), time.Now()
		mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s/#: %v", root, tok.Error())
	}
	quiet := func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return time.Since(last) > time.Second, "messages still coming"
	}
	if err := lab.Eventually(20*time.Second, quiet); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got = nil
	mu.Unlock()
	return func() []string {
		if err := lab.Eventually(20*time.Second, quiet); err != nil {
			t.Fatal(err)
		}
		c.Disconnect(100)
		mu.Lock()
		defer mu.Unlock()
		slices.Sort(got)
		return got
	}
}

// TestImportFeeds: a FireHOL-style netset (a file), a Spamhaus-style JSON
// and a DynFW-style CSV (both over HTTP from a server in the lab) reach
// both hosts' kernel sets, on mosquitto and on the embedded hub. An entry
// covering an allowlisted address, and the broker's own address, are
// refused and reported. A changed netset imported with --sync applies only
// the difference: one ban and one unban, the untouched entries keep their
// `at`. `vallum list -o plain` imported back changes nothing.
func TestImportFeeds(t *testing.T) {
	eachBroker(t, func(t *testing.T, l *lab.Lab, b *hub, dir string) {
		e1, e2 := addHost(t, l, "edge1"), addHost(t, l, "edge2")
		for _, h := range []*lab.Host{e1, e2} {
			startBridge(t, h, b, dir)
		}
		netset := filepath.Join(dir, "level1.netset")
		write := func(body string) {
			if err := os.WriteFile(netset, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("#\n# firehol_level1\n#\n203.0.113.1\n203.0.113.2\n203.0.113.3\n198.51.100.0/24\n" + b.h.Addr4 + "\n")
		base := serveFeeds(t, e1, map[string]string{
			"/drop_v4.json": `{"cidr":"192.0.2.0/28","sblid":"SBL1","rir":"arin"}` + "\n" +
				`{"cidr":"192.0.2.64/28","sblid":"SBL2","rir":"ripencc"}` + "\n" + `{"type":"metadata","records":2}` + "\n",
			"/greylist-latest.csv": "# terms\nAddress,Tags\n198.18.0.1,ssh\n\"198.18.0.2\",\"telnet,http\"\n2001:db8::7,smtp\n",
		})

		out := importFrom(t, e1, b, dir, "import", root, netset, "--allow", "198.51.100.128/25", "--timeout", "1d")
		for _, want := range []string{"covers an allowlisted address 198.51.100.128/25", `"` + b.h.Addr4 + `": covers an allowlisted address`, "2 refused", "published 3 bans"} {
			if !strings.Contains(out, want) {
				t.Errorf("netset import output lacks %q:\n%s", want, out)
			}
		}
		t.Logf("netset import:\n%s", out)
		t.Logf("spamhaus: %s", importFrom(t, e1, b, dir, "import", root, base+"/drop_v4.json", "--sync"))
		t.Logf("dynfw: %s", importFrom(t, e1, b, dir, "import", root, base+"/greylist-latest.csv", "--reason", "turris"))
		want := []string{"192.0.2.0/28", "192.0.2.64/28", "198.18.0.1", "198.18.0.2", "203.0.113.1", "203.0.113.2", "203.0.113.3"}
		for _, h := range []*lab.Host{e1, e2} {
			waitSet(t, h, 20*time.Second, want)
			waitPrefixes(t, h, root+"6", "2001:db8::7")
		}

		// The feed changes: .3 leaves, .4 comes.
		before := listAt(t, e2, b, dir)
		seen := watchList(t, b)
		write("203.0.113.1\n203.0.113.2\n203.0.113.4\n")
		out = importFrom(t, e2, b, dir, "import", root, netset, "--timeout", "1d", "--sync")
		meta := strings.TrimSpace(wire.MetaLine(wire.Meta{Reason: "level1.netset", Origin: "import:level1.netset"}))
		want = []string{root + "/add " + meta + "\n203.0.113.4 timeout 86400", root + "/ban/203.0.113.3 (empty)", root + "/ban/203.0.113.4", root + "/del 203.0.113.3"}
		if got := seen(); !slices.Equal(got, want) {
			t.Errorf("the broker carried, for the second import:\n%s\nwant only the difference:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if !strings.Contains(out, "1 to ban, 2 already banned, 1 to lift") || !strings.Contains(out, "published 1 bans and 1 unbans in 2 event messages") {
			t.Errorf("second import does not apply only the difference:\n%s", out)
		}
		want = []string{"192.0.2.0/28", "192.0.2.64/28", "198.18.0.1", "198.18.0.2", "203.0.113.1", "203.0.113.2", "203.0.113.4"}
		for _, h := range []*lab.Host{e1, e2} {
			waitSet(t, h, 20*time.Second, want)
		}
		after := listAt(t, e2, b, dir)
		for _, p := range []string{"203.0.113.1", "203.0.113.2", "192.0.2.0/28", "198.18.0.1"} {
			if after[p] != before[p] || before[p] == 0 {
				t.Errorf("%s: at %d after the second import, %d before: want it untouched", p, after[p], before[p])
			}
		}

		// Round trip: the list as a netset, imported as the feed it came
		// from, changes nothing.
		plain := importFrom(t, e2, b, dir, "list", root, "-o", "plain")
		rt := filepath.Join(dir, "roundtrip.netset")
		if err := os.WriteFile(rt, []byte(plain), 0o644); err != nil {
			t.Fatal(err)
		}
		out = importFrom(t, e2, b, dir, "import", root, rt, "--name", "level1.netset", "--timeout", "1d")
		if !strings.Contains(out, "0 to ban, 8 already banned, 0 to lift") {
			t.Errorf("import of list -o plain changed something:\n%s", out)
		}
		if again := listAt(t, e2, b, dir); fmt.Sprint(again) != fmt.Sprint(after) {
			t.Errorf("round trip changed the list:\n%v\nwas\n%v", again, after)
		}
	})
}

// TestImportMillion: a feed of 1,000,000 addresses imported into the
// embedded hub, and into mosquitto with a standalone keeper, reaches a
// host online whole, is on the broker as the keeper's chunks alone (no
// per-ban state), and a host that joins then has it all: every address of
// the feed and nothing else, in both hosts' sets. It logs the times (the
// late-join target is 5 s; no timed assertion) and the keeper's cuts,
// and what costs no matter the load: the CPU the hub and the late host
// used during the join, the hub's collections then (GODEBUG=gctrace=1),
// a heap profile of the hub holding the million (GOFLAGS=-tags=heapprof
// VALLUM_HEAPPROF=FILE), its resident memory at each step.
// VALLUM_E2E_FULL=1 only (a minute or more each).
func TestImportMillion(t *testing.T) {
	if os.Getenv("VALLUM_E2E_FULL") != "1" {
		t.Skip("VALLUM_E2E_FULL=1 runs it")
	}
	const n = 1000000
	for _, embedded := range []bool{true, false} {
		t.Run(map[bool]string{true: "embedded", false: "mosquitto"}[embedded], func(t *testing.T) {
			l, dir := newLab(t)
			b, kp := millionHub(t, l, dir, embedded)
			host, late := addHost(t, l, "host"), addHost(t, l, "late")
			hp := startBridge(t, host, b, dir)
			feed, want := millionFeed(t, dir, n)
			rss := sampleRSS(t, b.proc) // the hub, or mosquitto
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("the online host logged:\n%s", logLines(hp.Output(), "level=INFO", "level=WARN", "level=ERROR"))
					t.Logf("the hub logged:\n%s", logLines(b.proc.Output(), "level=WARN", "level=ERROR", "disconnect"))
				}
			})
			start := time.Now()
			out := importFrom(t, host, b, dir, "import", root, feed, "--timeout", "1d")
			published := time.Since(start)
			waitEntries(t, host, root, n, 10*time.Minute)
			online := time.Since(start)
			// The manifest alone is polled: reading the list costs seconds.
			err := lab.Eventually(3*time.Minute, func() (bool, string) {
				got, err := b.h.RetainedState(hubPort, wire.ManifestTopic(root), 200*time.Millisecond)
				m, derr := wire.DecodeManifest([]byte(got[wire.ManifestTopic(root)]))
				return err == nil && derr == nil && m.Entries == n, fmt.Sprintf("manifest of %d entries (%v, %v)", m.Entries, err, derr)
			})
			if err != nil {
				t.Fatalf("the keeper's cut of the million: %v", err)
			}
			onBroker := time.Since(start)
			// The late join is measured on a still list, as the benchmark
			// does: once the keeper is done with its cut (deleting the
			// chunks before, returning memory) and the online host with
			// its sync of the cut.
			still := waitStill(t, kp, hp)
			stillRSS, _ := b.proc.RSS()
			heapProfile(t, b.proc)
			gcs, gcMS, _ := gcTrace(b.proc)
			hubTicks := cpuTicks(b.proc)
			joined := time.Now()
			lp := startBridge(t, late, b, dir)
			waitEntries(t, late, root, n, 2*time.Minute)
			lateJoin := time.Since(joined)
			joinTicks, lateTicks := cpuTicks(b.proc)-hubTicks, cpuTicks(lp)
			joinedRSS, _ := b.proc.RSS()
			waitStill(t, b.proc, lp) // the hub returns the join's memory once the host acknowledged it all
			afterRSS, _ := b.proc.RSS()
			gcs2, gcMS2, gcLines := gcTrace(b.proc)
			t.Logf("%s: during the late join the hub used %d ms of CPU (%d collections, %.0f ms of their CPU, if GODEBUG=gctrace=1), the late host %d ms since its start\n%s",
				b.name(), joinTicks*10, gcs2-gcs, gcMS2-gcMS, lateTicks*10, strings.Join(gcLines[gcs:], "\n"))
			t.Logf("%s, 1,000,000 entries: import returned after %s, all in the online host's set after %s, the keeper's manifest of all on the broker after %s, the keeper and the online host still %s later; a host started then had all after %s (the target: 5 s); load average %s\n%s",
				b.name(), published.Round(time.Millisecond), online.Round(time.Millisecond), onBroker.Round(time.Millisecond),
				still.Round(time.Millisecond), lateJoin.Round(time.Millisecond), loadAvg(), out)
			t.Logf("%s: broker RSS peak %d MB, %d MB once still, %d MB right after the late join, %d MB once still again; the keeper's cuts:\n%s\nthe late host: %s",
				b.name(), rss()>>20, stillRSS>>20, joinedRSS>>20, afterRSS>>20,
				logLines(kp.Output(), `msg=cut `), logLines(lp.Output(), `msg=synced`, "sync"))
			// Read again while a read ends early: a loaded hub may pause
			// for more than a second between chunks.
			err = lab.Eventually(time.Minute, func() (bool, string) {
				c := readCompact(t, b)
				return len(c.list) == n && c.states == 0 && len(c.bad) == 0, c.String()
			})
			if err != nil {
				t.Errorf("the broker does not hold the million as chunks alone: %v", err)
			}
			for _, h := range []*lab.Host{host, late} {
				setHolds(t, h, root, want)
			}
		})
	}
}

// millionHub is chunkHubIn's hub, with the process that runs its keeper:
// the hub itself, or `vallum keeper` beside mosquitto.
func millionHub(t *testing.T, l *lab.Lab, dir string, embedded bool) (*hub, *lab.Proc) {
	if embedded {
		b, _ := chunkHubIn(t, l, dir, true)
		return b, b.proc
	}
	b := &hub{h: addHost(t, l, "hub"), dir: dir}
	b.start(t, true)
	return b, startKeeper(t, addHost(t, l, "k1"), b, dir, "k1", "--legacy-state=false")
}

// millionFeed writes a netset of n addresses from 100.64.0.0 on and
// returns its path and the addresses.
func millionFeed(t *testing.T, dir string, n int) (string, map[string]bool) {
	var sb strings.Builder
	want := make(map[string]bool, n)
	for i := range n {
		a := fmt.Sprintf("100.%d.%d.%d", 64+i>>16, byte(i>>8), byte(i))
		sb.WriteString(a + "\n")
		want[a] = true
	}
	feed := filepath.Join(dir, "million.netset")
	if err := os.WriteFile(feed, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return feed, want
}

// setHolds checks that h's set holds every address of want and nothing
// else, each with a timeout (the feed's day).
func setHolds(t *testing.T, h *lab.Host, set string, want map[string]bool) {
	t.Helper()
	out, err := h.Exec("ipset", "save", set)
	if err != nil {
		t.Fatal(err)
	}
	got, extra, untimed := 0, []string(nil), 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "add" {
			continue
		}
		if !want[f[2]] {
			extra = append(extra, f[2])
			continue
		}
		got++
		if len(f) < 5 || f[3] != "timeout" {
			untimed++
		}
	}
	if got != len(want) || len(extra) > 0 || untimed > 0 {
		t.Errorf("%s's set %s holds %d of the feed's %d addresses (%d lost), %d others %.10q, %d without a timeout",
			h.Name, set, got, len(want), len(want)-got, len(extra), extra, untimed)
	}
}

// logLines returns the lines of a process's log that contain any of s.
func logLines(out string, s ...string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if slices.ContainsFunc(s, func(s string) bool { return strings.Contains(line, s) }) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// waitStill waits until the processes use less than a tenth of a core
// together over half a second (at most 90 s) and returns how long it took.
func waitStill(t *testing.T, procs ...*lab.Proc) time.Duration {
	t.Helper()
	began := time.Now()
	last := cpuTicks(procs...)
	for time.Since(began) < 90*time.Second {
		time.Sleep(500 * time.Millisecond) // a sample, not a wait for an event
		now := cpuTicks(procs...)
		if now-last <= 5 { // of 100 a second: 50 ms in 500
			return time.Since(began)
		}
		last = now
	}
	t.Logf("the processes were still busy after %v", time.Since(began).Round(time.Second))
	return time.Since(began)
}

// cpuTicks is the CPU time the processes used so far, in clock ticks
// (utime and stime of /proc/PID/stat).
func cpuTicks(procs ...*lab.Proc) int64 {
	var n int64
	for _, p := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
		i := bytes.LastIndexByte(b, ')')
		if err != nil || i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:])) // from the state, field 3
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			n += u + s
		}
	}
	return n
}

// gcTrace counts the collections a process logged with GODEBUG=gctrace=1
// and sums their CPU (the "ms cpu" field: assist, background, idle).
func gcTrace(p *lab.Proc) (n int, cpuMS float64, lines []string) {
	b, _ := os.ReadFile(p.Log)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "gc ") {
			continue
		}
		_, after, ok := strings.Cut(line, " ms clock, ")
		cpu, _, ok2 := strings.Cut(after, " ms cpu")
		if !ok || !ok2 {
			continue
		}
		n++
		lines = append(lines, line)
		for _, f := range strings.FieldsFunc(cpu, func(r rune) bool { return r == '+' || r == '/' }) {
			v, _ := strconv.ParseFloat(f, 64)
			cpuMS += v
		}
	}
	return n, cpuMS, lines
}

// heapProfile has a process built with -tags heapprof write its heap
// profile (when VALLUM_HEAPPROF names the file) and waits for it. Only
// with that tag in GOFLAGS: SIGUSR1 would end a build without it.
func heapProfile(t *testing.T, p *lab.Proc) {
	path := os.Getenv("VALLUM_HEAPPROF")
	if path == "" || !strings.Contains(os.Getenv("GOFLAGS"), "heapprof") {
		return
	}
	os.Remove(path)
	syscall.Kill(p.Pid(), syscall.SIGUSR1)
	err := lab.Eventually(30*time.Second, func() (bool, string) {
		st, err := os.Stat(path)
		return err == nil && st.Size() > 0, "heap profile " + path
	})
	if err != nil {
		t.Log(err)
	}
}

// loadAvg is the machine's load average over 1, 5 and 15 minutes.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
