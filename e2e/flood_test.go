//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
)

const (
	floodTotal    = 1_000_000 // addresses in the bulk phase
	floodPerMsg   = 1_000     // addresses per message in the bulk phase
	floodSingles  = 20_000    // one address per message in the second phase
	floodRSSLimit = 200 << 20 // bytes
)

// TestFlood publishes a million addresses at QoS 1 as fast as one client
// can, then twenty thousand one per message, while sampling vallum's
// memory. Nothing may be lost, memory stays bounded, and a ban after the
// flood lands at once.
func TestFlood(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "host")
	must[*lab.Proc](t)(h.StartMosquitto(dir, 1883, false))
	v := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-h", "127.0.0.1", "-t", "blacklist",
		"--metrics", fmt.Sprintf("127.0.0.1:%d", hostileMetrics)))
	pub := must[mqtt.Client](t)(h.Connect(1883, mqtt.NewClientOptions().SetClientID("flood-pub")))
	defer pub.Disconnect(100)

	stop := sampleRSS(t, v)
	base := netip.MustParseAddr("100.64.0.0") // 100.64/10: 4M addresses, none of them the lab's
	start := time.Now()
	var toks []mqtt.Token
	a := base
	for m := 0; m < floodTotal/floodPerMsg; m++ {
		var b strings.Builder
		for range floodPerMsg {
			b.WriteString(a.String())
			b.WriteByte('\n')
			a = a.Next()
		}
		toks = append(toks, pub.Publish("blacklist/add", 1, false, b.String()))
	}
	waitTokens(t, toks)
	published := time.Since(start)
	waitEntries(t, h, "blacklist", floodTotal, 90*time.Second)
	bulk := time.Since(start)
	t.Logf("bulk: %d addresses in %d messages published in %v, all in the set after %v (%.0f addresses/s end to end)",
		floodTotal, floodTotal/floodPerMsg, published.Round(time.Millisecond), bulk.Round(time.Millisecond), floodTotal/bulk.Seconds())

	start = time.Now()
	toks = toks[:0]
	for range floodSingles {
		toks = append(toks, pub.Publish("blacklist/add", 1, false, a.String()))
		a = a.Next()
	}
	waitTokens(t, toks)
	waitEntries(t, h, "blacklist", floodTotal+floodSingles, 60*time.Second)
	singles := time.Since(start)
	t.Logf("singles: %d messages of one address in %v (%.0f messages/s end to end)",
		floodSingles, singles.Round(time.Millisecond), floodSingles/singles.Seconds())

	// Still serving: a ban after the flood lands at once.
	start = time.Now()
	hsend(t, pub, "blacklist/add", "203.0.113.1")
	if err := lab.Eventually(10*time.Second, func() (bool, string) {
		out, _ := h.Exec("ipset", "test", "blacklist", "203.0.113.1")
		return strings.Contains(out, "is in set"), out
	}); err != nil {
		t.Errorf("ban after the flood: %v", err)
	}
	t.Logf("ban after the flood applied in %v", time.Since(start).Round(time.Millisecond))

	maxRSS := stop()
	t.Logf("vallum max RSS during the flood: %.1f MB", float64(maxRSS)/(1<<20))
	if maxRSS > floodRSSLimit {
		t.Errorf("vallum RSS reached %.1f MB, want under %d MB", float64(maxRSS)/(1<<20), floodRSSLimit>>20)
	}
	m := must[map[string]float64](t)(h.Metrics(hostileMetrics))
	for k, val := range m {
		if strings.HasPrefix(k, "vallum_errors_total") && val != 0 || strings.HasPrefix(k, "vallum_refused_total") && val != 0 {
			t.Errorf("%s = %v, want 0", k, val)
		}
	}
	if v.Exited() {
		t.Fatalf("vallum exited: %v", v.Err())
	}
}

// sampleRSS samples p's VmRSS every 50 ms until the returned func is
// called, which returns the maximum seen.
func sampleRSS(t *testing.T, p *lab.Proc) func() int64 {
	var mu sync.Mutex
	var peak int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := p.RSS(); err == nil {
				mu.Lock()
				peak = max(peak, rss)
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

func waitTokens(t *testing.T, toks []mqtt.Token) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for i, tok := range toks {
		if !tok.WaitTimeout(time.Until(deadline)) || tok.Error() != nil {
			t.Fatalf("publish %d of %d not acked: %v", i, len(toks), tok.Error())
		}
	}
}

// waitEntries polls the set's header until it holds n entries.
func waitEntries(t *testing.T, h *lab.Host, set string, n int, timeout time.Duration) {
	t.Helper()
	got := -1
	err := lab.Eventually(timeout, func() (bool, string) {
		out, err := h.Exec("ipset", "list", "-t", set)
		if err != nil {
			return false, err.Error()
		}
		for _, line := range strings.Split(out, "\n") {
			if rest, ok := strings.CutPrefix(line, "Number of entries: "); ok {
				got, _ = strconv.Atoi(strings.TrimSpace(rest))
			}
		}
		return got == n, fmt.Sprintf("set %s has %d entries, want %d", set, got, n)
	})
	if err != nil {
		t.Fatal(err)
	}
}
