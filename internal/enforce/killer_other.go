//go:build !linux

package enforce

import (
	"errors"
	"fmt"
)

var errUnsupported = errors.ErrUnsupported

// New fails: cutting connections needs Linux's netlink.
func New(Options) (*Killer, error) {
	return nil, fmt.Errorf("--kill-connections needs Linux: %w", errors.ErrUnsupported)
}
