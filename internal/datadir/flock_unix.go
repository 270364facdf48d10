//go:build unix

package datadir

import (
	"errors"
	"os"
	"syscall"
)

var errHeld = syscall.EWOULDBLOCK

// flock takes an exclusive lock on f without waiting. It is per open file
// (not per process, unlike fcntl locks), so a second open in the same
// process is refused too: two brokers in one test conflict as two
// processes would.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
