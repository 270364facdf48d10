package keeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// fakeBroker is the keeper's broker: it keeps retained messages as MQTT
// does (an empty payload deletes) and hands the keeper its own publishes
// back, at once like mochi's inline subscriptions (inline) or later, when
// the test calls deliver, like a broker over the network.
type fakeBroker struct {
	mu       sync.Mutex
	retained map[string][]byte
	sent     []msg // every publish of the keeper, in order
	queue    []msg // not yet delivered to the keeper
	inline   bool
	k        *Keeper
	// refuse, when set, says which publishes of the keeper's the broker
	// refuses (its disk full): not retained, Retain's error.
	refuse func(topic string, payload []byte) bool
}

type msg struct {
	topic   string
	payload string
}

func newFakeBroker(inline bool) *fakeBroker {
	return &fakeBroker{retained: map[string][]byte{}, inline: inline}
}

func (b *fakeBroker) Retain(topic string, payload []byte) error {
	b.mu.Lock()
	if b.refuse != nil && b.refuse(topic, payload) {
		b.mu.Unlock()
		return errors.New("refused: disk full")
	}
	b.store(topic, payload)
	b.sent = append(b.sent, msg{topic, string(payload)})
	if !b.inline {
		b.queue = append(b.queue, msg{topic, string(payload)})
	}
	k := b.k
	b.mu.Unlock()
	if b.inline && k != nil {
		k.Message(topic, payload)
	}
	return nil
}

// RetainedPayload hands back a retained message, as the embedded broker
// does for its inline keeper (the broker an inline fake stands for); over
// the network a keeper cannot ask.
func (b *fakeBroker) RetainedPayload(topic string) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.retained[topic]
	return p, ok && b.inline
}

func (b *fakeBroker) store(topic string, payload []byte) {
	if len(payload) == 0 {
		delete(b.retained, topic)
	} else {
		b.retained[topic] = append([]byte{}, payload...)
	}
}

// client publishes as another client: retained (state, record) or not
// (events), delivered to the keeper in broker order.
func (b *fakeBroker) client(topic, payload string, retained bool) {
	b.mu.Lock()
	if retained {
		b.store(topic, []byte(payload))
	}
	b.queue = append(b.queue, msg{topic, payload})
	b.mu.Unlock()
	if b.inline {
		b.deliver()
	}
}

// deliver hands the keeper every queued message, in order.
func (b *fakeBroker) deliver() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.mu.Unlock()
			return
		}
		m := b.queue[0]
		b.queue = b.queue[1:]
		k := b.k
		b.mu.Unlock()
		k.Message(m.topic, []byte(m.payload))
	}
}

// connect feeds k every retained message of its filters, then settles:
// what an adapter does at start and after a lost session.
func (b *fakeBroker) connect(t *testing.T, k *Keeper) {
	t.Helper()
	b.mu.Lock()
	b.k = k
	b.queue = nil
	var all []msg
	for topic, p := range b.retained {
		for _, f := range k.Filters() {
			if matches(f, topic) {
				all = append(all, msg{topic, string(p)})
				break
			}
		}
	}
	b.mu.Unlock()
	for _, m := range all {
		k.Retained(m.topic, []byte(m.payload))
	}
	if err := k.Settle(); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	b.deliver()
}

// matches reports whether MQTT filter f matches topic.
func matches(f, topic string) bool {
	fl, tl := strings.Split(f, "/"), strings.Split(topic, "/")
	for i, lv := range fl {
		switch {
		case lv == "#":
			return true
		case i >= len(tl):
			return false
		case lv != "+" && lv != tl[i]:
			return false
		}
	}
	return len(fl) == len(tl)
}

// states returns the list as a host reads it, by state topic: the chunks
// the manifest names, then the per-ban states, the later of two winning.
func (b *fakeBroker) states(root string) map[string]wire.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.k != nil {
		now = b.k.now()
	}
	return readList(b.retained, root, now)
}

// rawStates returns the retained per-ban states only, by topic.
func (b *fakeBroker) rawStates(root string) map[string]wire.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]wire.State{}
	for topic, p := range b.retained {
		if strings.HasPrefix(topic, root+"/ban/") {
			s, _ := wire.DecodeState(p)
			out[topic] = s
		}
	}
	return out
}

// readList reads list root from retained messages as a host does: the
// chunks the manifest names (all there, checksums matching, or none
// taken), then the per-ban states, the later of two winning.
func readList(retained map[string][]byte, root string, now time.Time) map[string]wire.State {
	out := map[string]wire.State{}
	if m, err := wire.DecodeManifest(retained[wire.ManifestTopic(root)]); err == nil {
		for n, crc := range m.CRC {
			p := retained[wire.ChunkTopic(root, m.Gen, n)]
			c, err := wire.DecodeChunk(p)
			if err != nil || wire.ChunkCRC(p) != crc {
				panic(fmt.Sprintf("chunk %d of %s: %v, or checksum not the manifest's", n, root, err))
			}
			for _, e := range c.Entries {
				if _, live := e.State.Remaining(now); live {
					out[wire.StateTopic(root, e.Prefix)] = e.State
				}
			}
		}
	}
	for topic, p := range retained {
		if strings.HasPrefix(topic, root+"/ban/") {
			s, _ := wire.DecodeState(p)
			if old, ok := out[topic]; !ok || s.At.After(old.At) {
				out[topic] = s
			}
		}
	}
	return out
}

func (b *fakeBroker) record(t *testing.T, root string) wire.Record {
	t.Helper()
	b.mu.Lock()
	p := b.retained[wire.RecordTopic(root)]
	b.mu.Unlock()
	r, err := wire.DecodeRecord(p)
	if err != nil {
		t.Fatalf("record of %s: %v (payload %q)", root, err, p)
	}
	return r
}

func (b *fakeBroker) sentTo(topic string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.sent {
		if m.topic == topic {
			out = append(out, m.payload)
		}
	}
	return out
}

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.UnixMilli(1_800_000_000_000)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logs captures log lines.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) lines(sub string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type setup struct {
	o    Options
	b    *fakeBroker
	k    *Keeper
	clk  *clock
	logs *logs
}

// newKeeper starts a keeper of "blacklist" on b (a new inline fake broker
// if nil), with a test clock and o's copy, limits and name.
func newKeeper(t *testing.T, b *fakeBroker, o Options) *setup {
	t.Helper()
	s := &setup{o: o, b: b, clk: newClock(), logs: &logs{}}
	if s.b == nil {
		s.b = newFakeBroker(true)
	}
	if len(s.o.Roots) == 0 {
		s.o.Roots = []string{"blacklist"}
	}
	if s.o.BurstLines == 0 {
		s.o.BurstLines = 1 << 30 // the per-ban path; burst_test.go sets it
	}
	s.o.Now, s.o.Logger = s.clk.now, s.logs.logger()
	k, err := New(s.o, s.b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	s.k = k
	s.b.connect(t, k)
	return s
}

func copyPath(t *testing.T) string { return filepath.Join(t.TempDir(), "keeper.log") }

func state(at time.Time, exp time.Time, reason, origin string) string {
	return string(wire.EncodeState(wire.State{At: at, Expires: exp, Reason: reason, Origin: origin}))
}

// runFor runs k.Run until the test ends.
func runFor(t *testing.T, k *Keeper) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
