//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
)

// The keeper's burst path (internal/keeper burst.go): an event message of
// many lines goes straight into the keeper's next cut, without a retained
// state per ban, and `vallum import` sends its feed so.

// countStates counts the non-empty per-ban states the broker carries from
// now on (any publisher's: the keeper's, a client's).
func countStates(t *testing.T, b *hub) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	c := must[mqtt.Client](t)(b.h.Connect(hubPort, mqtt.NewClientOptions().SetClientID("burst-watch")))
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(root+"/ban/#", 0, func(_ mqtt.Client, m mqtt.Message) {
		if len(m.Payload()) > 0 {
			n.Add(1)
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s/ban/#: %v", root, tok.Error())
	}
	return &n
}

// writeFeed writes a netset of the addresses banAddr(from...from+n-1).
func writeFeed(t *testing.T, dir, name string, from, n int) string {
	t.Helper()
	var sb strings.Builder
	for i := from; i < from+n; i++ {
		sb.WriteString(banAddr(i).String() + "\n")
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImportBurst: a feed of 100,000 imported into the embedded hub, and
// into mosquitto with a standalone keeper, reaches a host online; the
// broker carries no per-ban state for any of them, neither while the
// import runs nor after (it holds the list as chunks alone); a host that
// joins later gets all 100,000. The feed's marking holds: with --sync, a
// feed that lost one entry lifts that one and changes nothing else.
func TestImportBurst(t *testing.T) {
	const n = 100_000
	for _, embedded := range []bool{true, false} {
		t.Run(map[bool]string{true: "embedded", false: "mosquitto"}[embedded], func(t *testing.T) {
			l, dir := newLab(t)
			b, _ := chunkHubIn(t, l, dir, embedded)
			online, late := addHost(t, l, "online"), addHost(t, l, "late")
			startBridge(t, online, b, dir)
			states := countStates(t, b)
			feed := writeFeed(t, dir, "burst.netset", 0, n)
			start := time.Now()
			out := importFrom(t, online, b, dir, "import", root, feed, "--timeout", "1d")
			imported := time.Since(start)
			waitEntries(t, online, root, n, 2*time.Minute)
			t.Logf("%s: import returned after %s, the online host had all %d after %s\n%s", b.name(),
				imported.Round(time.Millisecond), n, time.Since(start).Round(time.Millisecond), out)
			var c compact
			err := lab.Eventually(30*time.Second, func() (bool, string) {
				c = readCompact(t, b)
				return len(c.list) == n && c.states == 0 && len(c.bad) == 0, c.String()
			})
			if err != nil {
				t.Fatalf("the broker does not hold the %d bans as chunks alone: %v", n, err)
			}
			if got := states.Load(); got != 0 {
				t.Errorf("the broker carried %d per-ban states during the import, want none", got)
			}
			joined := time.Now()
			startBridge(t, late, b, dir)
			waitEntries(t, late, root, n, time.Minute)
			t.Logf("%s: the late host had all %d %s after its start; broker: %s", b.name(), n,
				time.Since(joined).Round(time.Millisecond), c)

			// The feed loses its first entry: --sync lifts it alone.
			less := writeFeed(t, dir, "burst.netset", 1, n-1)
			out = importFrom(t, online, b, dir, "import", root, less, "--timeout", "1d", "--sync")
			if !strings.Contains(out, fmt.Sprintf("0 to ban, %d already banned, 1 to lift", n-1)) {
				t.Errorf("second import with --sync:\n%s\nwant 0 to ban, %d already banned, 1 to lift", out, n-1)
			}
			waitEntries(t, late, root, n-1, time.Minute)
			if got := states.Load(); got != 0 {
				t.Errorf("the broker carried %d per-ban states, want none", got)
			}
		})
	}
}

// TestKeeperKilledMidBurst: a standalone keeper on mosquitto is SIGKILLed
// in the middle of 60 bursts of 1,000 bans (event messages, each taken
// into the keeper's next cut with no per-ban state), and started again:
// none is lost. What it had taken but not cut it had not acknowledged, so
// its session sends it again; what came while it was dead waited there.
func TestKeeperKilledMidBurst(t *testing.T) {
	const msgs, per = 60, 1000
	l, b, dir := mosquittoHub(t)
	kh := addHost(t, l, "k1")
	k := startKeeper(t, kh, b, dir, "k1")
	c := must[mqtt.Client](t)(b.h.Connect(hubPort, mqtt.NewClientOptions().SetClientID("burster")))
	defer c.Disconnect(100)
	want := make([]string, 0, msgs*per)
	for m := range msgs {
		if m == msgs/3 {
			k.Kill() // right after a burst the keeper has likely not cut yet
		}
		var sb strings.Builder
		for i := m * per; i < (m+1)*per; i++ {
			sb.WriteString(banAddr(i).String() + "\n")
			want = append(want, banAddr(i).String())
		}
		tok := c.Publish(root+"/add", 1, false, sb.String())
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish burst %d: %v", m, tok.Error())
		}
	}
	startKeeper(t, kh, b, dir, "k1")
	waitBrokerHolds(t, b, time.Minute, want)
	if cc := readCompact(t, b); cc.states != 0 {
		t.Errorf("the broker holds %d per-ban states after the bursts, want none: %s", cc.states, cc)
	}
	host := addHost(t, l, "late")
	startBridge(t, host, b, dir)
	waitEntries(t, host, root, msgs*per, time.Minute)
}
