package broker

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/vallum/vallum/internal/keeper"
	"github.com/vallum/vallum/internal/store"
	"github.com/vallum/vallum/internal/wire"
)

// The burst journal. mochi acknowledges an event before the hub's keeper
// sees it (inline subscriptions come after the PUBACK), and the bans of a
// burst live in the keeper's view alone until its next cut (a second or
// more; internal/keeper/burst.go): a hub killed in between lost them from
// the list. So the store hook writes each burst message to the store, as
// a journal entry, before mochi acknowledges it (as it writes a retained
// ban: in the file before the PUBACK, fsynced within 100 ms), and the
// keeper, at start, takes again the bans of the entries that no cut on
// the broker holds (keeper.Replay). While the journal holds entries, the
// unbans that may undo them are journaled too (a del event, a deleted
// state, an allowlist entry), so that a replayed ban never comes back
// over a later unban. An entry goes once a cut that holds it is in the
// store (keeper.Options.Flushed), oldest first: the journal holds what
// came since the last cut, and the store's compaction drops the rest.
// Entries live in the store itself (journalKey): a damaged one is skipped
// as any damaged record is, and a full disk refuses the publish.

// journalPrefix is the store key prefix of the journal's entries; the
// rest of the key is the entry's sequence number, 16 hex digits.
const journalPrefix = "vallum-journal_"

func journalKey(seq uint64) string { return fmt.Sprintf("%s%016x", journalPrefix, seq) }

// journal is the hub's burst journal, kept in the broker's store.
type journal struct {
	kv    *store.KV
	log   *slog.Logger
	roots []string
	burst int // lines of a burst (wire.BurstLines): a message of as many is journaled
	k     *keeper.Keeper

	mu       sync.Mutex
	next     uint64                  // the next entry's sequence number
	entries  []jentry                // held, oldest first
	taking   map[*mqtt.Client]uint64 // an entry whose message the keeper may not have taken yet
	upto     map[string]uint64       // per list, the burst messages its cuts hold (keeper.Bursts)
	loaded   []keeper.Replayed       // entries found at start, until replay
	skipped  int                     // entries found at start that do not decode
	replayed int                     // bans taken again at start
}

// jentry is a held entry: what it waits for before it may go.
type jentry struct {
	seq   uint64
	root  string // its list; "" for an allowlist entry
	burst bool   // a burst: it waits for a cut holding mark
	taken bool   // the keeper took its message (or never will)
	mark  uint64 // keeper.Bursts(root) once taken
}

// openJournal reads the journal's entries from kv, for replay.
func openJournal(kv *store.KV, roots []string, log *slog.Logger) (*journal, error) {
	j := &journal{kv: kv, log: log, roots: roots, burst: wire.BurstLines,
		taking: map[*mqtt.Client]uint64{}, upto: map[string]uint64{}}
	type found struct {
		seq uint64
		m   keeper.Replayed
	}
	var all []found
	err := kv.Scan(journalPrefix, func(key string, val []byte) error {
		seq, err := strconv.ParseUint(strings.TrimPrefix(key, journalPrefix), 16, 64)
		m, ok := decodeEntry(val)
		if err != nil || !ok {
			j.skipped++
			return nil
		}
		all = append(all, found{seq, m})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the burst journal: %w", err)
	}
	if j.skipped > 0 {
		log.Warn("burst journal: unreadable entries skipped", "count", j.skipped)
	}
	// Scan gives file order (a compaction keeps it); the sequence is the
	// order mochi took them in.
	slices.SortFunc(all, func(a, b found) int { return cmp.Compare(a.seq, b.seq) })
	for _, f := range all {
		j.next = f.seq + 1
		// Not taken until replay: nothing goes before the keeper saw it.
		j.entries = append(j.entries, jentry{seq: f.seq, root: j.rootOf(f.m.Topic)})
		j.loaded = append(j.loaded, f.m)
	}
	return j, nil
}

// rootOf returns the list of an event or state topic; "" otherwise.
func (j *journal) rootOf(topic string) string {
	for _, r := range j.roots {
		if wire.IsEventTopic(r, topic) || strings.HasPrefix(topic, r+"/"+wire.LevelState+"/") {
			return r
		}
	}
	return ""
}

// encodeEntry is an entry's value: when mochi took the message (Unix
// milliseconds, 8 bytes), the topic's length (2 bytes), the topic, the
// payload.
func encodeEntry(at time.Time, topic string, payload []byte) []byte {
	b := make([]byte, 10+len(topic)+len(payload))
	binary.LittleEndian.PutUint64(b, uint64(at.UnixMilli()))
	binary.LittleEndian.PutUint16(b[8:], uint16(len(topic)))
	copy(b[10:], topic)
	copy(b[10+len(topic):], payload)
	return b
}

func decodeEntry(b []byte) (keeper.Replayed, bool) {
	if len(b) < 10 {
		return keeper.Replayed{}, false
	}
	n := int(binary.LittleEndian.Uint16(b[8:]))
	if len(b) < 10+n {
		return keeper.Replayed{}, false
	}
	return keeper.Replayed{At: time.UnixMilli(int64(binary.LittleEndian.Uint64(b))), Topic: string(b[10 : 10+n]),
		Payload: bytes.Clone(b[10+n:])}, true
}

// wants reports what of a publish the journal keeps: a burst (an event of
// more lines than a burst's, counted roughly: a line more or less does not
// matter), and while it holds entries, what may unban their bans.
func (j *journal) wants(cl *mqtt.Client, pk packets.Packet, event bool) (burst, keep bool) {
	if cl.Net.Inline {
		return false, false // the keeper's own: its deletions after a cut are no unbans
	}
	if event && bytes.Count(pk.Payload, []byte{'\n'})+1 >= j.burst {
		return true, true
	}
	j.mu.Lock()
	open := len(j.entries) > 0
	j.mu.Unlock()
	if !open {
		return false, false
	}
	switch {
	case event:
		return false, true
	case strings.HasPrefix(pk.TopicName, wire.AllowPrefix):
		return false, len(pk.Payload) > 0
	case pk.FixedHeader.Retain && len(pk.Payload) == 0:
		return false, j.rootOf(pk.TopicName) != ""
	}
	return false, false
}

// write journals pk, if it wants it, before mochi acknowledges it: a
// failed write refuses the publish (storeHook.OnPublish).
func (j *journal) write(cl *mqtt.Client, pk packets.Packet, event bool) error {
	burst, keep := j.wants(cl, pk, event)
	if !keep {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	seq := j.next
	if err := j.kv.Set(journalKey(seq), encodeEntry(time.Now(), pk.TopicName, pk.Payload)); err != nil {
		return err
	}
	j.next++
	j.takenLocked(cl) // an entry of an earlier connection's message left hanging
	j.entries = append(j.entries, jentry{seq: seq, root: j.rootOf(pk.TopicName), burst: burst})
	j.taking[cl] = seq
	return nil
}

// taken: mochi handed cl's message to its subscribers, the keeper
// included (OnPublished), or cl's connection ended (OnDisconnect, after
// its last message): the entry waits for a cut that holds what the
// keeper took so far.
func (j *journal) taken(cl *mqtt.Client) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.taking[cl]; ok {
		j.takenLocked(cl)
		j.trimLocked()
	}
}

func (j *journal) takenLocked(cl *mqtt.Client) {
	seq, ok := j.taking[cl]
	if !ok {
		return
	}
	delete(j.taking, cl)
	for i := len(j.entries) - 1; i >= 0; i-- {
		if e := &j.entries[i]; e.seq == seq {
			e.taken = true
			if e.burst && e.root != "" {
				e.mark = j.k.Bursts(e.root)
			}
			return
		}
	}
}

// flushed: the cuts of root in the store hold its burst messages up to
// upto (keeper.Options.Flushed).
func (j *journal) flushed(root string, upto uint64) {
	// The cut may not be in the store (mochi drops what the store
	// refuses), or not on the disk: a power cut could keep the journal's
	// deletions and lose the cut.
	if j.kv.Health() != nil {
		return
	}
	j.mu.Lock()
	j.upto[root] = max(j.upto[root], upto)
	held := len(j.entries) > 0
	j.mu.Unlock()
	if !held || j.kv.Sync() != nil {
		return // trimmed at a later cut
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.trimLocked()
}

// trimLocked deletes the entries no longer needed, oldest first: a later
// one stays while an earlier one does, since it may unban what that one
// bans.
func (j *journal) trimLocked() {
	n := 0
	for _, e := range j.entries {
		if !e.taken || e.burst && e.root != "" && j.upto[e.root] < e.mark {
			break
		}
		if err := j.kv.Delete(journalKey(e.seq)); err != nil {
			break // kept: deleted at the next trim
		}
		n++
	}
	j.entries = slices.Delete(j.entries, 0, n)
}

// replay gives the keeper the entries found at start, after it settled,
// with those journaled since (their unbans count); then they wait for the
// cut that holds what it took again.
func (j *journal) replay() {
	j.mu.Lock()
	msgs := j.loaded
	j.loaded = nil
	old := len(msgs)
	if old == 0 {
		j.mu.Unlock()
		return
	}
	for _, e := range j.entries[old:] {
		v, ok, err := j.kv.Get(journalKey(e.seq))
		if m, good := decodeEntry(v); err == nil && ok && good {
			m.Seen = true
			msgs = append(msgs, m)
		}
	}
	j.mu.Unlock()
	n := j.k.Replay(msgs)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.replayed = n
	for i := range old {
		e := &j.entries[i]
		e.taken = true
		if e.root != "" {
			e.burst, e.mark = true, j.k.Bursts(e.root)
		}
	}
	j.trimLocked()
	j.log.Info("burst journal replayed", "entries", old, "bans", n)
}

// stats are the journal's counters, for metrics.
func (j *journal) stats() (held, skipped, replayed int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.entries), j.skipped, j.replayed
}
