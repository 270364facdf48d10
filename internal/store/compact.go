package store

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// compactRetry is how long a failed compaction (most often a full disk)
// waits before the next try, so that it does not log every SyncEvery.
const compactRetry = time.Minute

// loop fsyncs what was written and compacts the file when it has grown.
// It is the only goroutine that replaces s.f once Open returned, so it may
// use the file without the lock.
func (s *KV) loop() {
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
		grown := s.size > 2*s.live+int64(len(magic))+s.opts.CompactMin && time.Now().After(s.nextCompact)
		s.mu.Unlock()
		if dirty {
			s.synced(s.fsync(f))
		}
		if grown {
			if err := s.compact(); err != nil {
				s.fail(err)
			}
		}
	}
}

func (s *KV) synced(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.workedLocked(&s.serr)
		return
	}
	err = fmt.Errorf("fsync %s: %w", s.path, err)
	s.failedLocked(&s.serr, err)
	s.err = errors.Join(s.err, err)
}

// fail records a failed compaction: nothing is lost (the old file is kept
// whole), but it is a sign of a full disk.
func (s *KV) fail(err error) {
	s.log.Error("store: compaction failed, the file keeps growing; retrying in a minute", "file", s.path, "err", err)
	s.mu.Lock()
	s.err = errors.Join(s.err, err)
	s.nextCompact = time.Now().Add(compactRetry)
	s.mu.Unlock()
}

// compact writes the live records to a new file and renames it over the
// old one. Writers are held up only while the index is copied and at the
// swap: writes made during the copy go to the old file as usual and are
// replayed into the new one at the swap.
func (s *KV) compact() error {
	start := time.Now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	old := s.f
	snap := s.snapshot("")
	s.pending = []op{}
	s.mu.Unlock()

	tmp := s.path + ".tmp"
	nf, index, size, live, err := s.writeLive(tmp, old, snap)
	if err != nil {
		return s.abortCompact(nf, fmt.Errorf("compact %s: %w", s.path, err))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // Close came first and synced the old file: keep it
		_ = nf.Close()
		_ = os.Remove(tmp)
		return nil
	}
	swap := &KV{index: index, live: live, size: size}
	var tail []byte
	for _, p := range s.pending {
		o := byte(opSet)
		if p.del {
			o = opDel
			if _, ok := swap.index[p.key]; !ok {
				continue
			}
		}
		rec := encodeRecord(o, p.key, p.val)
		tail = append(tail, rec...)
		swap.apply(o, p.key, swap.size, len(p.val), crcOf(rec))
		swap.size += int64(len(rec))
	}
	s.pending = nil
	if _, err := nf.WriteAt(tail, size); err != nil {
		return s.abortCompactLocked(nf, fmt.Errorf("compact %s: %w", s.path, err))
	}
	if err := s.fsync(nf); err != nil {
		return s.abortCompactLocked(nf, fmt.Errorf("compact %s: fsync: %w", s.path, err))
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return s.abortCompactLocked(nf, fmt.Errorf("compact %s: %w", s.path, err))
	}
	s.syncDir()
	_ = old.Close()
	before := s.size
	s.f, s.index, s.live, s.size, s.dirty = nf, swap.index, swap.live, swap.size, false
	s.log.Debug("store compacted", "file", s.path, "before", before, "after", s.size,
		"keys", len(s.index), "took", time.Since(start))
	return nil
}

// writeLive writes the records of snap, read from old, to a new file at
// tmp and fsyncs it. It returns the file, open, and its index. On an error
// the file (if any) is returned for the caller to close and remove.
func (s *KV) writeLive(tmp string, old *os.File, snap []keyLoc) (nf *os.File, index map[string]loc, size, live int64, err error) {
	nf, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	w := bufio.NewWriterSize(nf, 256<<10)
	index = make(map[string]loc, len(snap))
	size = int64(len(magic))
	_, _ = w.WriteString(magic)
	var val []byte
	for _, e := range snap {
		val = slices.Grow(val[:0], int(e.n))[:e.n]
		if _, err := old.ReadAt(val, e.off); err != nil {
			return nf, nil, 0, 0, fmt.Errorf("read %.64q: %w", e.key, err)
		}
		rec := encodeRecord(opSet, e.key, val)
		if _, err := w.Write(rec); err != nil {
			return nf, nil, 0, 0, err
		}
		index[e.key] = loc{off: size + header + int64(len(e.key)), n: e.n, crc: crcOf(rec)}
		size += int64(len(rec))
		live += int64(len(rec))
	}
	if err := w.Flush(); err != nil {
		return nf, nil, 0, 0, err
	}
	if err := s.fsync(nf); err != nil {
		return nf, nil, 0, 0, fmt.Errorf("fsync: %w", err)
	}
	return nf, index, size, live, nil
}

func (s *KV) abortCompact(nf *os.File, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.abortCompactLocked(nf, err)
}

func (s *KV) abortCompactLocked(nf *os.File, err error) error {
	s.pending = nil
	if nf != nil {
		_ = nf.Close()
	}
	_ = os.Remove(s.path + ".tmp")
	return err
}

// syncDir makes a rename in the store's folder durable; some file
// systems cannot sync a folder, and the rename is then as durable as they
// make it.
func (s *KV) syncDir() {
	d, err := os.Open(filepath.Dir(s.path))
	if err != nil {
		return
	}
	_ = s.fsync(d)
	_ = d.Close()
}

// fsync is f.Sync, unless a test turned it off.
func (s *KV) fsync(f *os.File) error {
	if s.opts.noSync {
		return nil
	}
	return f.Sync()
}
