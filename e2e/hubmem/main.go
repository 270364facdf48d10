// Command hubmem measures the hub (`vallum broker -t blacklist`, mochi and
// its inline keeper, without legacy state) holding a list as chunks: it
// feeds the list to the keeper as legacy events, waits until the keeper
// has cut it (per-ban state only for the last changes), then reads the
// hub's resident size holding it and at its peak while late joiners read
// the list (manifest, chunks and per-ban state in one SUBSCRIBE, as
// docs/compact-list.md says a host reads it). Loopback only; one JSON line
// of figures. As the measurements in docs/compact-list.md:
//
//	go build -o /tmp/vallum ./cmd/vallum && go run ./e2e/hubmem -bin /tmp/vallum -n 1000000
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

const root = "blacklist"

type result struct {
	N            int       `json:"n"`
	MemoryLimit  string    `json:"memory_limit"`
	FeedS        float64   `json:"feed_s"`
	SettleS      float64   `json:"settle_s"`
	Chunks       int       `json:"chunks"`
	States       int       `json:"states"`
	RSSHoldMB    float64   `json:"rss_holding_mb"`
	RSSPeakFeed  float64   `json:"rss_peak_feeding_mb"`
	RSSPeakJoins float64   `json:"rss_peak_during_joins_mb"`
	JoinS        []float64 `json:"join_s"`
	Got          []int     `json:"got"`
}

func main() {
	bin := flag.String("bin", "/tmp/vallum", "vallum binary")
	n := flag.Int("n", 1000000, "bans")
	limit := flag.String("memory-limit", "200MiB", "the hub's --memory-limit")
	rate := flag.Int("rate", 25000, "bans fed per second")
	joiners := flag.Int("joiners", 3, "late joiners, one after the other")
	flag.Parse()
	r, err := run(*bin, *n, *limit, *rate, *joiners)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubmem:", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

func run(bin string, n int, limit string, rate, joiners int) (result, error) {
	r := result{N: n, MemoryLimit: limit}
	dir, err := os.MkdirTemp("", "hubmem")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	addr := ln.Addr().String()
	ln.Close()
	hub := exec.Command(bin, "broker", "--listen", addr, "-t", root, "--data-dir", filepath.Join(dir, "data"),
		"--legacy-state=false", "--memory-limit", limit, "--log-level", "warn")
	hub.Stderr, hub.Stdout = os.Stderr, os.Stderr
	if err := hub.Start(); err != nil {
		return r, err
	}
	defer func() { hub.Process.Kill(); hub.Wait() }()
	w := watch(hub.Process.Pid)
	defer w.stop()
	var c mqtt.Client
	for deadline := time.Now().Add(20 * time.Second); c == nil; time.Sleep(100 * time.Millisecond) {
		if c, err = connect(addr, "feeder"); err != nil && time.Now().After(deadline) {
			return r, err
		}
	}
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(rate/1000))
	type batch struct {
		tok     mqtt.Token
		payload string
	}
	var sent []batch
	for i := 0; i < n; i += 1000 {
		<-tick.C
		var sb strings.Builder
		for j := i; j < min(n, i+1000); j++ {
			sb.WriteString(addrOf(j).String() + " timeout 86400\n")
		}
		sent = append(sent, batch{c.Publish(root+"/add", 1, false, sb.String()), sb.String()})
	}
	tick.Stop()
	// A busy hub can lose the feeder (a late PINGRESP): what was not
	// acknowledged is sent again on a new connection.
	for tries := 0; len(sent) > 0 && tries < 5; tries++ {
		var again []batch
		for _, b := range sent {
			if !b.tok.WaitTimeout(time.Minute) || b.tok.Error() != nil {
				again = append(again, b)
			}
		}
		if len(again) > 0 {
			fmt.Fprintf(os.Stderr, "hubmem: %d batches sent again\n", len(again))
			c.Disconnect(250)
			if c, err = connect(addr, "feeder"); err != nil {
				return r, err
			}
			for i := range again {
				again[i].tok = c.Publish(root+"/add", 1, false, again[i].payload)
			}
		}
		sent = again
	}
	c.Disconnect(250)
	r.FeedS = time.Since(start).Seconds()
	// Settled: the chunks and the per-ban states (the changes since the
	// last cut, fewer than the keeper's bound) hold the n bans.
	for deadline := time.Now().Add(5 * time.Minute); ; {
		m, states, err := peek(addr)
		if err == nil && m.Entries+states == n {
			r.Chunks, r.States = len(m.CRC), states
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("not settled: manifest %+v, %d states, %v", m.Entries, states, err)
		}
		time.Sleep(2 * time.Second)
	}
	r.SettleS = time.Since(start).Seconds() - r.FeedS
	r.RSSPeakFeed = mb(w.peak())
	time.Sleep(20 * time.Second) // idle, as a hub mostly is
	r.RSSHoldMB = mb(w.now())
	w.reset()
	for i := range joiners {
		t0 := time.Now()
		got, last, err := join(addr, fmt.Sprint("joiner", i))
		if err != nil {
			return r, err
		}
		r.JoinS = append(r.JoinS, last.Sub(t0).Seconds())
		r.Got = append(r.Got, got)
	}
	r.RSSPeakJoins = mb(w.peak())
	return r, nil
}

func addrOf(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func connect(addr, id string) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(true).
		SetKeepAlive(5 * time.Minute).SetPingTimeout(time.Minute).
		SetAutoReconnect(false).SetMaxResumePubInFlight(100).SetOrderMatters(false)
	c := mqtt.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect: %v", t.Error())
	}
	return c, nil
}

// read subscribes to the manifest, the chunks and the per-ban state in
// one SUBSCRIBE and returns what came until all the chunks the manifest
// names are there and nothing came for quiet, and when the last came.
func read(addr, id string, quiet time.Duration) (wire.Manifest, map[int][]byte, int, time.Time, error) {
	var mu sync.Mutex
	var man wire.Manifest
	chunks := map[uint64]map[int][]byte{}
	states := 0
	last := time.Now()
	c, err := connect(addr, id)
	if err != nil {
		return man, nil, 0, last, err
	}
	defer c.Disconnect(250)
	t := c.SubscribeMultiple(map[string]byte{wire.ManifestTopic(root): 1, wire.ChunksFilter(root): 1, wire.StateFilter(root): 0},
		func(_ mqtt.Client, m mqtt.Message) {
			mu.Lock()
			defer mu.Unlock()
			last = time.Now()
			switch topic := m.Topic(); {
			case topic == wire.ManifestTopic(root):
				man, _ = wire.DecodeManifest(m.Payload())
			case strings.HasPrefix(topic, wire.ChunkPrefix):
				gen, i, _ := wire.ParseChunkTopic(root, topic)
				if chunks[gen] == nil {
					chunks[gen] = map[int][]byte{}
				}
				chunks[gen][i] = m.Payload()
			case len(m.Payload()) > 0:
				states++
			}
		})
	if !t.WaitTimeout(time.Minute) || t.Error() != nil {
		return man, nil, 0, last, fmt.Errorf("subscribe: %v", t.Error())
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		whole := man.Gen != 0 && len(chunks[man.Gen]) == len(man.CRC)
		idle := time.Since(last) > quiet
		if whole && idle {
			defer mu.Unlock()
			return man, chunks[man.Gen], states, last, nil
		}
		mu.Unlock()
	}
	return man, nil, states, last, fmt.Errorf("the list did not come whole")
}

func peek(addr string) (wire.Manifest, int, error) {
	m, _, states, _, err := read(addr, "peek", 500*time.Millisecond)
	return m, states, err
}

// join reads the whole list, decoding every chunk, and returns the bans
// and when the last message came. It waits for a pause of 500 ms: with 50,
// the per-ban states that came after the chunks were missed under load
// (995,000 of 1,000,000 counted, the 5,000 states after the last cut).
func join(addr, id string) (int, time.Time, error) {
	m, chunks, states, last, err := read(addr, id, 500*time.Millisecond)
	if err != nil {
		return 0, last, err
	}
	got := states
	for i, crc := range m.CRC {
		c, err := wire.DecodeChunk(chunks[i])
		if err != nil || wire.ChunkCRC(chunks[i]) != crc {
			return 0, last, fmt.Errorf("chunk %d: %v", i, err)
		}
		got += len(c.Entries)
	}
	return got, last, nil
}

// watcher samples a process's resident size every 50 ms.
type watcher struct {
	mu       sync.Mutex
	pid      int
	cur, max int64
	done     chan struct{}
}

func watch(pid int) *watcher {
	w := &watcher{pid: pid, done: make(chan struct{})}
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
				rss := rssOf(pid)
				w.mu.Lock()
				w.cur, w.max = rss, max(w.max, rss)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *watcher) now() int64  { w.mu.Lock(); defer w.mu.Unlock(); return w.cur }
func (w *watcher) peak() int64 { w.mu.Lock(); defer w.mu.Unlock(); return w.max }
func (w *watcher) reset()      { w.mu.Lock(); w.max = w.cur; w.mu.Unlock() }
func (w *watcher) stop()       { close(w.done) }

func rssOf(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }
