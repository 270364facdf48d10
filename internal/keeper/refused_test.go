package keeper

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// refuseSwitch is what a full disk refuses, switched by the test.
type refuseSwitch struct {
	mu           sync.Mutex
	chunks, mans bool
	tries        int // chunk publishes refused
}

func (r *refuseSwitch) set(chunks, mans bool) {
	r.mu.Lock()
	r.chunks, r.mans = chunks, mans
	r.mu.Unlock()
}

// refuse refuses every chunk but the first of a cut (a disk that filled
// during the cut), and manifests, as switched. Deletions pass: they are
// tiny records, which a full disk still takes.
func (r *refuseSwitch) refuse(topic string, payload []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(payload) == 0 {
		return false
	}
	if r.chunks && strings.HasPrefix(topic, wire.ChunkPrefix) && !strings.HasSuffix(topic, "/0") {
		r.tries++
		return true
	}
	return r.mans && topic == wire.ManifestTopic("blacklist")
}

// TestCutRefused: a list of 10,500 held by chunks; the broker's disk
// fills, 10,001 bans more come and a cut is due. Its chunks refused, the
// cut deletes nothing: a host still reads all 20,501 (the generation
// before, the per-ban states), however long the disk stays full, and the
// keeper logs it once and tries again only every cutRetry. Its manifest
// refused, the same. Once the broker takes them again, the next cut holds
// the 20,501 and deletes the generations before and the orphan chunk of
// the refused cut.
func TestCutRefused(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{Name: "hub"})
	var disk refuseSwitch
	s.b.refuse = disk.refuse
	banN(s.b, 0, 10500, "")
	s.k.maintain()
	s.clk.add(statedFor + time.Second)
	s.k.maintain()
	first := s.b.manifest(t, "blacklist")
	if n := len(s.b.rawStates("blacklist")); n != 0 || first.Entries != 10500 {
		t.Fatalf("%d per-ban states and a manifest of %d after the first cut, want none and 10,500", n, first.Entries)
	}

	disk.set(true, false)
	banN(s.b, 20000, 10001, "")
	for range 5 { // the disk stays full: cuts due, per-ban states old enough to fold
		s.k.maintain()
		s.clk.add(statedFor + time.Second)
		if got := len(s.b.states("blacklist")); got != 20501 {
			t.Fatalf("disk full: a host reads %d bans, want 20,501", got)
		}
	}
	if m := s.b.manifest(t, "blacklist"); m.Gen != first.Gen {
		t.Errorf("disk full: manifest of generation %x, want the first cut's %x", m.Gen, first.Gen)
	}
	if n := len(s.b.rawStates("blacklist")); n != 10001 {
		t.Errorf("disk full: %d per-ban states, want the 10,001 no cut holds", n)
	}
	if n := len(s.logs.lines("cut not taken")); n != 1 {
		t.Errorf("%d log lines of a refused cut, want 1", n)
	}
	if disk.tries > 5 { // one chunk refused a try: a try at most every cutRetry
		t.Errorf("%d chunk publishes refused in 5 maintains %v apart, want a try at most every %v", disk.tries, statedFor+time.Second, cutRetry)
	}

	disk.set(false, true) // the chunks land, their manifest does not
	s.clk.add(cutRetry)
	s.k.maintain()
	s.clk.add(statedFor + time.Second)
	s.k.maintain()
	if m := s.b.manifest(t, "blacklist"); m.Gen != first.Gen {
		t.Errorf("manifest refused: manifest of generation %x, want the first cut's %x", m.Gen, first.Gen)
	}
	if got := len(s.b.states("blacklist")); got != 20501 {
		t.Errorf("manifest refused: a host reads %d bans, want 20,501", got)
	}

	disk.set(false, false)
	s.clk.add(cutRetry)
	s.k.maintain()
	s.clk.add(statedFor + time.Second)
	s.k.maintain()
	m := s.b.manifest(t, "blacklist")
	if got := len(s.b.states("blacklist")); got != 20501 || m.Entries != 20501 {
		t.Errorf("disk freed: a host reads %d bans, the manifest says %d, want 20,501", got, m.Entries)
	}
	if topics := s.b.chunkTopics("blacklist"); len(topics) != len(m.CRC) {
		t.Errorf("disk freed: %d chunks retained, want the %d of the last cut: %v", len(topics), len(m.CRC), topics)
	}
	if n := len(s.b.rawStates("blacklist")); n != 0 {
		t.Errorf("disk freed: %d per-ban states left, want none", n)
	}
	if n := len(s.logs.lines("cut taken by the broker again")); n != 1 {
		t.Errorf("%d log lines of a cut taken again, want 1", n)
	}
}

// unackedBroker is a broker over the network that, while fail is set,
// refuses chunks without the sink knowing at Retain (keepermqtt: the hub
// out of disk drops an MQTT 3.1.1 client at each refused publish): only
// Sync fails.
type unackedBroker struct {
	*fakeBroker
	fail atomic.Bool
}

func (b *unackedBroker) Retain(topic string, payload []byte) error {
	if b.fail.Load() && len(payload) > 0 && strings.HasPrefix(topic, wire.ChunkPrefix) {
		return nil
	}
	return b.fakeBroker.Retain(topic, payload)
}

func (b *unackedBroker) Sync() error {
	if b.fail.Load() {
		return errors.New("the broker did not acknowledge the publishes")
	}
	return nil
}

// TestCutNotAcked: through a Syncer sink (`vallum keeper` over MQTT), a
// cut whose chunks and manifest the broker did not acknowledge deletes
// nothing of the generation before; once it does, the next cut holds all.
func TestCutNotAcked(t *testing.T) {
	needChunks(t)
	b := &unackedBroker{fakeBroker: newFakeBroker(false)}
	clk, lg := newClock(), &logs{}
	k, err := New(Options{Roots: []string{"blacklist"}, Name: "hub", BurstLines: 1 << 30, Now: clk.now, Logger: lg.logger()}, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	b.connect(t, k)
	step := func() {
		b.deliver()
		k.maintain()
		b.deliver()
		clk.add(statedFor + time.Second)
		k.maintain()
		b.deliver()
	}
	banN(b.fakeBroker, 0, 10500, "")
	step()
	first := b.manifest(t, "blacklist")

	b.fail.Store(true)
	banN(b.fakeBroker, 20000, 10001, "")
	for range 3 {
		step()
		if got := len(b.states("blacklist")); got != 20501 {
			t.Fatalf("not acknowledged: a host reads %d bans, want 20,501", got)
		}
	}
	if m := b.manifest(t, "blacklist"); m.Gen != first.Gen {
		t.Errorf("not acknowledged: manifest of generation %x, want the first cut's %x", m.Gen, first.Gen)
	}

	b.fail.Store(false)
	clk.add(cutRetry)
	step()
	m := b.manifest(t, "blacklist")
	if got := len(b.states("blacklist")); got != 20501 || m.Entries != 20501 {
		t.Errorf("acknowledged again: a host reads %d bans, the manifest says %d, want 20,501", got, m.Entries)
	}
	if topics := b.chunkTopics("blacklist"); len(topics) != len(m.CRC) {
		t.Errorf("acknowledged again: %d chunks retained, want the %d of the last cut", len(topics), len(m.CRC))
	}
}
