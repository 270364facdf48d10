package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// load reads the whole file into the index. A damaged record is skipped:
// reading goes on at the next good record. What was skipped is counted in
// s.loaded, and the file is then repaired (repair), never cut in place.
func (s *KV) load() error {
	st, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("stat store %s: %w", s.path, err)
	}
	size := st.Size()
	if size < int64(len(magic)) { // new, or a crash while it was being created
		if _, err := s.f.WriteAt([]byte(magic), 0); err != nil {
			return fmt.Errorf("write store %s: %w", s.path, err)
		}
		s.size = int64(len(magic))
		return s.fsync(s.f)
	}
	m := make([]byte, len(magic))
	if _, err := s.f.ReadAt(m, 0); err != nil || string(m) != magic {
		return fmt.Errorf("store %s: not a vallum store (bad header); move it away to start empty", s.path)
	}
	readLog(s.f, size, s.apply, s.skipped)
	// New records go after everything, damage included: should the
	// repair below fail, nothing was cut, and the next load skips the
	// damage again.
	s.size = size
	if s.loaded.Records > 0 {
		s.repair()
	}
	return nil
}

func (s *KV) skipped(from, to int64, more bool, reason string) {
	s.loaded.Records++
	s.loaded.Bytes += to - from
	s.loaded.Tail = !more
	s.tailAt = from
	if more {
		s.log.Error("store: skipped a damaged record, the write in it is lost; the records after it load",
			"file", s.path, "offset", from, "bytes", to-from, "reason", reason)
		return
	}
	s.log.Warn("store: dropped a damaged tail (a crash while writing?), the write in it is lost",
		"file", s.path, "offset", from, "bytes", to-from, "reason", reason)
}

// repair writes the good records to a new file, keeps the damaged one
// aside, and puts the new one in its place. If any step fails, the
// damaged file stays in use as it is, and the next start tries again.
func (s *KV) repair() {
	tmp := s.path + ".tmp"
	nf, index, size, live, err := s.writeLive(tmp, s.f, s.snapshot(""))
	if err == nil {
		var aside string
		if aside, err = s.keepAside(); err == nil {
			s.loaded.Aside = aside
			err = os.Rename(tmp, s.path)
		}
	}
	if err != nil {
		if nf != nil {
			_ = nf.Close()
		}
		_ = os.Remove(tmp)
		s.log.Error("store: cannot repair the damaged file, going on with it as it is", "file", s.path, "err", err)
		return
	}
	s.syncDir()
	_ = s.f.Close()
	s.f, s.index, s.size, s.live = nf, index, size, live
	s.log.Warn("store: repaired; the damaged file is kept aside, remove it once you no longer need it",
		"file", s.path, "aside", s.loaded.Aside, "damaged_records", s.loaded.Records, "damaged_bytes", s.loaded.Bytes)
}

// keepAside keeps what the repair leaves out. After damage in the middle,
// that is the whole file: it gets a second name, path.damaged-TIME, a hard
// link (no space, cannot fail half way) or else a copy. After a damaged
// tail alone (a crash while writing: every crash could leave one, and a
// copy of the whole store each time would fill the disk) it is the tail:
// its bytes are copied to path.tail-TIME.
func (s *KV) keepAside() (string, error) {
	tail := s.loaded.Tail && s.loaded.Records == 1
	kind := ".damaged-"
	if tail {
		kind = ".tail-"
	}
	base := s.path + kind + time.Now().UTC().Format("20060102T150405Z")
	for i := 0; i < 100; i++ {
		aside := base
		if i > 0 {
			aside += "." + strconv.Itoa(i)
		}
		var err error
		if tail {
			err = s.copyFile(s.tailAt, aside)
		} else if err = os.Link(s.path, aside); err != nil && !errors.Is(err, os.ErrExist) {
			err = s.copyFile(0, aside)
		}
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("keep %s aside: %w", s.path, err)
		}
		s.syncDir()
		return aside, nil
	}
	return "", fmt.Errorf("keep %s aside: too many damaged copies already", s.path)
}

// copyFile copies s.f from off on to a new file at to.
func (s *KV) copyFile(off int64, to string) error {
	st, err := s.f.Stat()
	if err != nil {
		return err
	}
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, io.NewSectionReader(s.f, off, st.Size()-off))
	if err == nil {
		err = s.fsync(dst)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(to)
	}
	return err
}
