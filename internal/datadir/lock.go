package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockedError reports a lock held by another process.
type LockedError struct {
	Path string
	What string // what the lock guards, for the message
	PID  int    // the holder, as it wrote itself in the file; 0 if unknown
}

func (e *LockedError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "another vallum (pid " + strconv.Itoa(e.PID) + ")"
	}
	return fmt.Sprintf("%s is in use by %s, which holds %s: stop it, or give each its own --data-dir",
		e.What, holder, e.Path)
}

// Lock is a held lock; Close releases it.
type Lock struct{ f *os.File }

// Acquire takes the lock file at path, creating it and its folder, or
// fails at once with a *LockedError when another process holds it. The
// lock is an flock(2): the kernel releases it when the holder exits, even
// by SIGKILL, so a stale file never blocks a start. what names what the
// lock guards, such as "the broker store in /var/lib/vallum".
func Acquire(path, what string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// No O_TRUNC: the file holds the holder's pid until we hold the lock.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f); err != nil {
		_ = f.Close()
		if errors.Is(err, errHeld) {
			return nil, &LockedError{Path: path, What: what, PID: readPID(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Written for the message of the next process that tries; the lock
	// itself is the flock, not the content.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Close releases the lock. The file stays: removing it would let a third
// process lock a new file while a second still waits on the old one.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
