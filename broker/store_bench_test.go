package broker

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/wire"
)

// TestStoreBulkRetained measures the store with 100,000 retained bans at a
// hub (keeper on): publish time, file size, heap, and the load time after
// a restart, with the store and without it. It reports figures, it does
// not time-assert; it only fails if bans are lost. Opt-in, it takes
// seconds: VALLUM_STORE_BENCH=1 go test -run StoreBulk -v ./broker/
func TestStoreBulkRetained(t *testing.T) {
	if os.Getenv("VALLUM_STORE_BENCH") == "" {
		t.Skip("set VALLUM_STORE_BENCH=1 to run")
	}
	const n = 100_000
	for _, withStore := range []bool{false, true} {
		t.Run(fmt.Sprintf("store=%v", withStore), func(t *testing.T) {
			o := Options{Listeners: []Listener{local(KindTCP)}, Lists: []string{"blacklist"}, Logger: quietLogger()}
			if withStore {
				o.DataDir = t.TempDir()
			}
			heap0 := heapInUse()
			b1, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			stop1 := runBroker(t, b1)
			took := publishBans(t, url(t, b1, KindTCP), n)
			waitRetained(t, b1, n)
			heap := heapInUse() - heap0
			t.Logf("publish %d retained QoS 1: %v (%.0f/s); broker heap %.1f MB",
				n, took.Round(time.Millisecond), n/took.Seconds(), float64(heap)/(1<<20))
			stop1()
			if !withStore {
				return
			}
			st, err := os.Stat(datadir.Dir(o.DataDir).Store())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("store file %.1f MB", float64(st.Size())/(1<<20))

			heap0 = heapInUse()
			t0 := time.Now()
			b2, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			stop2 := runBroker(t, b2)
			defer stop2()
			waitRetained(t, b2, n)
			t.Logf("restart: %d retained loaded in %v; broker heap %.1f MB", n,
				time.Since(t0).Round(time.Millisecond), float64(heapInUse()-heap0)/(1<<20))
		})
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// publishBans publishes n ban states at QoS 1, many in flight, and waits
// for every ack.
func publishBans(t *testing.T, u string, n int) time.Duration {
	t.Helper()
	c := mustDial(t, u)
	payload := wire.EncodeState(wire.State{At: time.Now(), Origin: "bench"})
	t0 := time.Now()
	toks := make([]paho.Token, 0, 60_000)
	flush := func() {
		for _, tok := range toks {
			if err := wait(t, tok, "publish"); err != nil {
				t.Fatal(err)
			}
		}
		toks = toks[:0]
	}
	for i := range n {
		topic := fmt.Sprintf("blacklist/ban/10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		toks = append(toks, c.Publish(topic, 1, true, payload))
		if len(toks) == cap(toks) { // under mochi's 65,535 receive maximum
			flush()
		}
	}
	flush()
	took := time.Since(t0)
	c.Disconnect(50)
	return took
}

func waitRetained(t *testing.T, b *Broker, n int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for b.Stats().Retained < n {
		if time.Now().After(deadline) {
			t.Fatalf("retained %d, want %d", b.Stats().Retained, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
