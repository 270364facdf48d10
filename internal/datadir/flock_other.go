//go:build !unix

package datadir

import (
	"errors"
	"fmt"
	"os"
)

var errHeld = errors.New("lock held")

// flock is unsupported here: vallum runs on Linux.
func flock(*os.File) error {
	return fmt.Errorf("file locks: %w", errors.ErrUnsupported)
}
