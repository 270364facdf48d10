// Package store is the embedded broker's storage engine: a key/value store
// kept as an append-only log file with an index in memory.
package store

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// KV is a key/value store: an index in memory and an append-only log file.
// The index holds only where each live value sits in the file, not the
// value: values are read back once, at startup, so 100,000 retained bans
// are not kept twice in memory (mochi holds its own copy).
//
// Durability: every Set and Delete is written to the file (one write call,
// no user-space buffer) before it returns, so a crash of the process loses
// nothing that was acknowledged. The file is fsynced at most every
// SyncEvery (100 ms) when something was written, and on Close: a power cut
// loses at most the writes of the last sync interval (longer while a
// compaction runs, since the old file is not synced then; the compacted
// file is synced before it replaces the old one).
//
// Damage: every record carries a CRC-32C. A damaged record is skipped and
// counted, and reading goes on at the next good record; a damaged tail (a
// record cut short by a crash) is dropped. The file is never truncated or
// rewritten in place: after damage, Open writes the good records to a new
// file that replaces it, and keeps aside what that leaves out: the whole
// original, or a damaged tail's bytes (load.go).
//
// A write that fails (a full or failing disk) returns its error, and
// Health reports it until a later write works.
type KV struct {
	path string
	log  *slog.Logger
	opts Options

	mu          sync.Mutex
	f           *os.File
	size        int64          // bytes in f: the next record goes there
	live        int64          // bytes of the records that index points to
	index       map[string]loc // live keys
	dirty       bool           // written since the last fsync
	pending     []op           // writes made while a compaction copies the file; nil otherwise
	closed      bool
	err         error // a failed fsync or compaction, reported by Close
	werr, serr  error // the last write, the last fsync failed with this; nil once one works
	lastErr     error // the last failure, and when: Health holds it for FailHold
	failedAt    time.Time
	writeErrors int64
	loaded      Damage
	tailAt      int64     // where a damaged tail starts
	nextCompact time.Time // after a failed compaction, not before this

	stop chan struct{}
	done chan struct{}
}

// loc is where a live value sits in the file.
type loc struct {
	off int64  // of the value
	n   int32  // value length
	crc uint32 // of the record, to skip a Set that changes nothing
}

type op struct {
	del bool
	key string
	val []byte
}

// Options tunes a KV. The zero value is usable.
type Options struct {
	SyncEvery  time.Duration // fsync at most this often; 100 ms when 0
	CompactMin int64         // compact when the file exceeds 2x the live bytes plus this; 4 MiB when 0
	Logger     *slog.Logger  // default discards
	// FailHold is how long Health still reports a failed write once
	// writes work again; 1 minute when 0, none when negative. On a full
	// disk small writes fit where large ones do not: without it, health
	// would flap between ok and failing.
	FailHold time.Duration

	noSync bool // tests that do not cut power: no fsync, for speed
}

// Damage is what Open found wrong in the file and repaired.
type Damage struct {
	Records int    // damaged records (or runs of them) skipped, the tail included
	Bytes   int64  // bytes they took
	Tail    bool   // the last of them was a damaged tail
	Aside   string // where what the repair left out was kept (load.go); "" if nothing was damaged or it could not be kept
}

// Stats are a KV's counters, for metrics.
type Stats struct {
	FileBytes   int64
	LiveBytes   int64
	Keys        int
	WriteErrors int64  // writes and fsyncs that failed since Open
	Loaded      Damage // what Open repaired
}

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("store closed")

// Open opens or creates the log at path and loads its index. Only one KV
// may have path open: the caller locks (see internal/datadir).
func Open(path string, o Options) (*KV, error) {
	if o.SyncEvery <= 0 {
		o.SyncEvery = 100 * time.Millisecond
	}
	if o.CompactMin <= 0 {
		o.CompactMin = 4 << 20
	}
	if o.FailHold == 0 {
		o.FailHold = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// A compaction or repair that a crash interrupted left a partial copy:
	// the original is still complete.
	if err := os.Remove(path + ".tmp"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove %s.tmp: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &KV{path: path, log: o.Logger, opts: o, f: f, index: map[string]loc{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.load(); err != nil {
		_ = f.Close()
		return nil, err
	}
	go s.loop()
	return s, nil
}

// Set stores val under key. It is in the file (not yet fsynced) when Set
// returns. A Set of the value key already has writes nothing.
func (s *KV) Set(key string, val []byte) error {
	if len(key) > maxKey || len(val) > maxValue {
		return fmt.Errorf("set %.64q: key or value too long", key)
	}
	return s.write(opSet, key, val)
}

// Delete removes key; a missing key is no error and writes nothing.
func (s *KV) Delete(key string) error {
	return s.write(opDel, key, nil)
}

func (s *KV) write(o byte, key string, val []byte) error {
	rec := encodeRecord(o, key, val)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	old, ok := s.index[key]
	if !ok && o == opDel || ok && o == opSet && s.same(old, rec, val) {
		return nil
	}
	if _, err := s.f.WriteAt(rec, s.size); err != nil {
		// Cut off whatever part of this record went out (it was never
		// acknowledged), so that the next one follows the last good one.
		_ = s.f.Truncate(s.size)
		err = fmt.Errorf("write %.64q to %s: %w", key, s.path, err)
		s.failedLocked(&s.werr, err)
		return err
	}
	s.workedLocked(&s.werr)
	s.apply(o, key, s.size, len(val), crcOf(rec))
	s.size += int64(len(rec))
	s.dirty = true
	if s.pending != nil {
		s.pending = append(s.pending, op{del: o == opDel, key: key, val: slices.Clone(val)})
	}
	return nil
}

// same reports whether the live value at l is val, whose record is rec.
// The checksum rules out nearly every change without reading the file.
func (s *KV) same(l loc, rec, val []byte) bool {
	if int(l.n) != len(val) || l.crc != crcOf(rec) {
		return false
	}
	v := make([]byte, l.n)
	_, err := s.f.ReadAt(v, l.off)
	return err == nil && bytes.Equal(v, val)
}

// failedLocked records a failed write or fsync in *slot, logging when the
// store goes from working to failing, not at every write.
func (s *KV) failedLocked(slot *error, err error) {
	s.writeErrors++
	if s.werr == nil && s.serr == nil {
		s.log.Error("store: cannot write, what is not written is not kept", "file", s.path, "err", err)
	}
	*slot = err
	s.lastErr, s.failedAt = err, time.Now()
}

func (s *KV) workedLocked(slot *error) {
	if *slot == nil {
		return
	}
	*slot = nil
	if s.werr == nil && s.serr == nil {
		s.log.Info("store: writes work again", "file", s.path)
	}
}

// Health is nil while the store works: the last write and the last fsync
// succeeded, and nothing failed for FailHold. Otherwise it is the error
// they failed with.
func (s *KV) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := errors.Join(s.werr, s.serr); err != nil {
		return err
	}
	if s.lastErr != nil && time.Since(s.failedAt) < s.opts.FailHold {
		return fmt.Errorf("%w (%s ago)", s.lastErr, time.Since(s.failedAt).Round(time.Second))
	}
	return nil
}

// Stats returns the store's counters.
func (s *KV) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{FileBytes: s.size, LiveBytes: s.live, Keys: len(s.index),
		WriteErrors: s.writeErrors, Loaded: s.loaded}
}

// Get returns the value of key, and whether it is there.
func (s *KV) Get(key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	l, ok := s.index[key]
	if !ok {
		return nil, false, nil
	}
	v := make([]byte, l.n)
	if _, err := s.f.ReadAt(v, l.off); err != nil {
		return nil, false, fmt.Errorf("read %.64q from %s: %w", key, s.path, err)
	}
	return v, true, nil
}

type keyLoc struct {
	key string
	loc
}

// snapshot returns the live keys under prefix in file order (roughly the
// order of their last write). The caller holds mu.
func (s *KV) snapshot(prefix string) []keyLoc {
	var hits []keyLoc
	for k, l := range s.index {
		if strings.HasPrefix(k, prefix) {
			hits = append(hits, keyLoc{k, l})
		}
	}
	slices.SortFunc(hits, func(a, b keyLoc) int { return cmp.Compare(a.off, b.off) })
	return hits
}

// Scan calls fn with every live key that starts with prefix and its
// value, in file order. fn runs with the store locked: it must not call
// the store. val is only valid during the call.
func (s *KV) Scan(prefix string, fn func(key string, val []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	var buf []byte
	for _, h := range s.snapshot(prefix) {
		buf = slices.Grow(buf[:0], int(h.n))[:h.n]
		if _, err := s.f.ReadAt(buf, h.off); err != nil {
			return fmt.Errorf("read %.64q from %s: %w", h.key, s.path, err)
		}
		if err := fn(h.key, buf); err != nil {
			return err
		}
	}
	return nil
}

// Len returns the number of live keys.
func (s *KV) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// apply records in the index a record written at off with a value of n bytes.
func (s *KV) apply(o byte, key string, off int64, n int, crc uint32) {
	if old, ok := s.index[key]; ok {
		s.live -= recordLen(key, int(old.n))
		delete(s.index, key)
	}
	if o == opSet {
		s.index[key] = loc{off: off + header + int64(len(key)), n: int32(n), crc: crc}
		s.live += recordLen(key, n)
	}
}

// Sync makes every write made before it durable now, rather than at the
// next SyncEvery: for a caller about to drop what a power cut would then
// need (the broker's burst journal, once a cut holds its entries).
func (s *KV) Sync() error {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		f := s.f
		s.mu.Unlock()
		err := s.fsync(f)
		if errors.Is(err, os.ErrClosed) {
			continue // a compaction swapped the file, synced with every write
		}
		s.synced(err)
		return err
	}
}

// Close syncs and closes the file. It returns the first fsync or
// compaction error seen since the store was opened.
func (s *KV) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	err := s.fsync(s.f)
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		err = fmt.Errorf("close store %s: %w", s.path, err)
	}
	return errors.Join(s.err, err)
}
