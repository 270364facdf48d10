package broker

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// kv is the broker's key/value store: an index in memory and an
// append-only log file. The index holds only where each live value sits in
// the file, not the value: values are read back once, at startup, so
// 100,000 retained bans are not kept twice in memory (mochi holds its own
// copy).
//
// Durability: every Set and Delete is written to the file (one write call,
// no user-space buffer) before it returns, so a crash of the process loses
// nothing. The file is fsynced at most every syncEvery (100 ms) when
// something was written, and on Close: a power cut loses at most the
// writes of the last sync interval (longer while a compaction runs, since
// the old file is not synced then; the compacted file is synced before it
// replaces the old one). A record cut short by a power cut or a full disk
// is detected by its length and checksum, dropped and logged at the next
// open.
//
// File layout: the magic line, then records of
// crc32c(4) op(1) keylen(4) vallen(4) key val, little-endian, the checksum
// covering everything after it.
type kv struct {
	path string
	log  *slog.Logger
	opts kvOptions

	mu      sync.Mutex
	f       *os.File
	size    int64          // bytes in f: the next record goes there
	live    int64          // bytes of the records that index points to
	index   map[string]loc // live keys
	dirty   bool           // written since the last fsync
	pending []kvOp         // writes made while a compaction copies the file; nil otherwise
	closed  bool
	err     error // a failed fsync or compaction, reported by Close

	stop chan struct{}
	done chan struct{}
}

// loc is where a live value sits in the file.
type loc struct {
	off int64 // of the value
	n   int32 // value length
	rec int32 // whole record length, for the live byte count
}

type kvOp struct {
	del bool
	key string
	val []byte
}

type kvOptions struct {
	SyncEvery  time.Duration // fsync at most this often; 100 ms when 0
	CompactMin int64         // compact when the file exceeds 2x the live bytes plus this; 4 MiB when 0
}

const (
	kvMagic    = "vallum-kv 1\n"
	kvHeader   = 13
	kvMaxKey   = 1 << 20 // topics are at most 64 KiB, client ids much less
	kvMaxValue = 1 << 28 // messages are at most 4 MiB here, JSON-encoded
	opSet      = 1
	opDel      = 2
)

var (
	errKVClosed = errors.New("store closed")
	crcTable    = crc32.MakeTable(crc32.Castagnoli)
)

// openKV opens or creates the log at path and loads its index. A damaged
// tail (a record cut short or failing its checksum) is cut off and logged;
// everything before it is kept.
func openKV(path string, log *slog.Logger, o kvOptions) (*kv, error) {
	if o.SyncEvery <= 0 {
		o.SyncEvery = 100 * time.Millisecond
	}
	if o.CompactMin <= 0 {
		o.CompactMin = 4 << 20
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A compaction that a crash interrupted left a partial copy: the
	// original is still complete.
	if err := os.Remove(path + ".tmp"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove %s.tmp: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &kv{path: path, log: log, opts: o, f: f, index: map[string]loc{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.load(); err != nil {
		_ = f.Close()
		return nil, err
	}
	go s.loop()
	return s, nil
}

// load reads the whole file into the index.
func (s *kv) load() error {
	st, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("stat store %s: %w", s.path, err)
	}
	if st.Size() < int64(len(kvMagic)) { // new, or a crash while it was being created
		if _, err := s.f.WriteAt([]byte(kvMagic), 0); err != nil {
			return fmt.Errorf("write store %s: %w", s.path, err)
		}
		s.size = int64(len(kvMagic))
		return s.f.Sync()
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, st.Size()), 256<<10)
	magic := make([]byte, len(kvMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != kvMagic {
		return fmt.Errorf("store %s: not a vallum store (bad header); move it away to start empty", s.path)
	}
	off := int64(len(kvMagic))
	var hdr [kvHeader]byte
	var body []byte
	for {
		op, key, n, reason := readRecord(r, &hdr, &body)
		if reason == "" && op != opSet && op != opDel {
			reason = fmt.Sprintf("unknown op %d", op)
		}
		if reason != "" {
			if reason != "end" {
				s.log.Warn("store: dropping a damaged tail, the writes in it are lost",
					"file", s.path, "offset", off, "dropped_bytes", st.Size()-off, "reason", reason)
				if err := s.f.Truncate(off); err != nil {
					return fmt.Errorf("truncate store %s: %w", s.path, err)
				}
			}
			break
		}
		s.apply(op, key, off, n)
		off += int64(kvHeader + len(key) + n)
	}
	s.size = off
	return nil
}

// readRecord reads one record. reason is "" for a good record, "end" at a
// clean end of file, and says what is wrong otherwise.
func readRecord(r *bufio.Reader, hdr *[kvHeader]byte, body *[]byte) (op byte, key string, n int, reason string) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return 0, "", 0, "end"
		}
		return 0, "", 0, "record header cut short"
	}
	kl := binary.LittleEndian.Uint32(hdr[5:9])
	vl := binary.LittleEndian.Uint32(hdr[9:13])
	if kl > kvMaxKey || vl > kvMaxValue {
		return 0, "", 0, fmt.Sprintf("implausible lengths key %d value %d", kl, vl)
	}
	if need := int(kl + vl); cap(*body) < need {
		*body = make([]byte, need)
	}
	b := (*body)[:kl+vl]
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, "", 0, "record cut short"
	}
	crc := crc32.Update(crc32.Checksum(hdr[4:], crcTable), crcTable, b)
	if crc != binary.LittleEndian.Uint32(hdr[0:4]) {
		return 0, "", 0, "checksum mismatch"
	}
	return hdr[4], string(b[:kl]), int(vl), ""
}

// apply records in the index a record written at off with a value of n bytes.
func (s *kv) apply(op byte, key string, off int64, n int) {
	if old, ok := s.index[key]; ok {
		s.live -= int64(old.rec)
		delete(s.index, key)
	}
	if op == opSet {
		rec := int32(kvHeader + len(key) + n)
		s.index[key] = loc{off: off + kvHeader + int64(len(key)), n: int32(n), rec: rec}
		s.live += int64(rec)
	}
}

func encodeRecord(op byte, key string, val []byte) []byte {
	b := make([]byte, kvHeader+len(key)+len(val))
	b[4] = op
	binary.LittleEndian.PutUint32(b[5:9], uint32(len(key)))
	binary.LittleEndian.PutUint32(b[9:13], uint32(len(val)))
	copy(b[kvHeader:], key)
	copy(b[kvHeader+len(key):], val)
	binary.LittleEndian.PutUint32(b[0:4], crc32.Checksum(b[4:], crcTable))
	return b
}

// Set stores val under key. It is in the file (not yet fsynced) when Set returns.
func (s *kv) Set(key string, val []byte) error {
	if len(key) > kvMaxKey || len(val) > kvMaxValue {
		return fmt.Errorf("set %.64q: key or value too long", key)
	}
	return s.write(opSet, key, val)
}

// Delete removes key; a missing key is no error and writes nothing.
func (s *kv) Delete(key string) error {
	return s.write(opDel, key, nil)
}

func (s *kv) write(op byte, key string, val []byte) error {
	rec := encodeRecord(op, key, val)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errKVClosed
	}
	if _, ok := s.index[key]; !ok && op == opDel {
		return nil
	}
	if _, err := s.f.WriteAt(rec, s.size); err != nil {
		// Cut off whatever part went out, so later records stay readable.
		_ = s.f.Truncate(s.size)
		return fmt.Errorf("write %.64q to %s: %w", key, s.path, err)
	}
	s.apply(op, key, s.size, len(val))
	s.size += int64(len(rec))
	s.dirty = true
	if s.pending != nil {
		s.pending = append(s.pending, kvOp{del: op == opDel, key: key, val: slices.Clone(val)})
	}
	return nil
}

// Get returns the value of key, and whether it is there.
func (s *kv) Get(key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, errKVClosed
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

// Scan calls fn with every live key that starts with prefix and its
// value, in file order (roughly the order of their last write). fn runs
// with the store locked: it must not call the store. val is only valid
// during the call.
func (s *kv) Scan(prefix string, fn func(key string, val []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errKVClosed
	}
	type kl struct {
		key string
		loc
	}
	var hits []kl
	for k, l := range s.index {
		if strings.HasPrefix(k, prefix) {
			hits = append(hits, kl{k, l})
		}
	}
	slices.SortFunc(hits, func(a, b kl) int { return cmp.Compare(a.off, b.off) })
	var buf []byte
	for _, h := range hits {
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
func (s *kv) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// sizes returns the file size and the live bytes in it.
func (s *kv) sizes() (file, live int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size, s.live
}

// loop fsyncs what was written and compacts the file when it has grown.
// It is the only goroutine that replaces s.f, so it may use the file
// without the lock.
func (s *kv) loop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		dirty, f := s.dirty, s.f
		s.dirty = false
		grown := s.size > 2*s.live+int64(len(kvMagic))+s.opts.CompactMin
		s.mu.Unlock()
		if dirty {
			if err := f.Sync(); err != nil {
				s.fail(fmt.Errorf("fsync %s: %w", s.path, err))
			}
		}
		if grown {
			if err := s.compact(); err != nil {
				s.fail(err)
			}
		}
	}
}

func (s *kv) fail(err error) {
	s.log.Error("store", "error", err)
	s.mu.Lock()
	s.err = errors.Join(s.err, err)
	s.mu.Unlock()
}

// compact writes the live records to a new file and renames it over the
// old one. Writers are held up only while the index is copied and at the
// swap: writes made during the copy go to the old file as usual and are
// replayed into the new one at the swap.
func (s *kv) compact() error {
	start := time.Now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	old := s.f
	type kl struct {
		key string
		loc
	}
	snap := make([]kl, 0, len(s.index))
	for k, l := range s.index {
		snap = append(snap, kl{k, l})
	}
	s.pending = []kvOp{}
	s.mu.Unlock()
	slices.SortFunc(snap, func(a, b kl) int { return cmp.Compare(a.off, b.off) })

	tmp := s.path + ".tmp"
	nf, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return s.abortCompact(nil, fmt.Errorf("compact %s: %w", s.path, err))
	}
	w := bufio.NewWriterSize(nf, 256<<10)
	index := make(map[string]loc, len(snap))
	size, live := int64(len(kvMagic)), int64(0)
	_, _ = w.WriteString(kvMagic)
	var val []byte
	for _, e := range snap {
		val = slices.Grow(val[:0], int(e.n))[:e.n]
		if _, err := old.ReadAt(val, e.off); err != nil {
			return s.abortCompact(nf, fmt.Errorf("compact %s: read %.64q: %w", s.path, e.key, err))
		}
		rec := encodeRecord(opSet, e.key, val)
		if _, err := w.Write(rec); err != nil {
			return s.abortCompact(nf, fmt.Errorf("compact %s: %w", s.path, err))
		}
		index[e.key] = loc{off: size + kvHeader + int64(len(e.key)), n: e.n, rec: int32(len(rec))}
		size += int64(len(rec))
		live += int64(len(rec))
	}
	if err := w.Flush(); err != nil {
		return s.abortCompact(nf, fmt.Errorf("compact %s: %w", s.path, err))
	}
	if err := nf.Sync(); err != nil {
		return s.abortCompact(nf, fmt.Errorf("compact %s: fsync: %w", s.path, err))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // Close came first and synced the old file: keep it
		_ = nf.Close()
		_ = os.Remove(tmp)
		return nil
	}
	swap := &kv{index: index, live: live, size: size}
	var tail []byte
	for _, op := range s.pending {
		o := byte(opSet)
		if op.del {
			o = opDel
			if _, ok := swap.index[op.key]; !ok {
				continue
			}
		}
		rec := encodeRecord(o, op.key, op.val)
		tail = append(tail, rec...)
		swap.apply(o, op.key, swap.size, len(op.val))
		swap.size += int64(len(rec))
	}
	s.pending = nil
	if _, err := nf.WriteAt(tail, size); err != nil {
		return s.abortCompactLocked(nf, fmt.Errorf("compact %s: %w", s.path, err))
	}
	if err := nf.Sync(); err != nil {
		return s.abortCompactLocked(nf, fmt.Errorf("compact %s: fsync: %w", s.path, err))
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return s.abortCompactLocked(nf, fmt.Errorf("compact %s: %w", s.path, err))
	}
	syncDir(filepath.Dir(s.path))
	_ = old.Close()
	before := s.size
	s.f, s.index, s.live, s.size, s.dirty = nf, swap.index, swap.live, swap.size, false
	s.log.Debug("store compacted", "file", s.path, "before", before, "after", s.size,
		"keys", len(s.index), "took", time.Since(start))
	return nil
}

func (s *kv) abortCompact(nf *os.File, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.abortCompactLocked(nf, err)
}

func (s *kv) abortCompactLocked(nf *os.File, err error) error {
	s.pending = nil
	if nf != nil {
		_ = nf.Close()
	}
	_ = os.Remove(s.path + ".tmp")
	return err
}

// syncDir makes a rename in dir durable; some file systems cannot sync a
// directory, and the rename is then as durable as they make it.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// Close syncs and closes the file. It returns the first fsync or
// compaction error seen since the store was opened.
func (s *kv) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errKVClosed
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		err = fmt.Errorf("close store %s: %w", s.path, err)
	}
	return errors.Join(s.err, err)
}
