package wire

import "time"

// Timeout is a per-entry timeout in whole seconds, as the kernel takes it.
// Zero means permanent; DefaultTimeout means "the set's own default", which
// is what a line without `timeout N` asks for.
type Timeout int64

const (
	// DefaultTimeout leaves the timeout to the set's default (ipset sends no
	// timeout attribute; a set created by vallum has default 0, permanent).
	DefaultTimeout Timeout = -1
	// MaxTimeout is the kernel's largest ipset timeout (IPSET_MAX_TIMEOUT,
	// (UINT_MAX >> 1) / MSEC_PER_SEC); longer timeouts are clamped to it.
	MaxTimeout Timeout = 2147483
)

// ClampTimeout returns d as a Timeout: whole seconds, at least 1 for any
// positive duration, at most MaxTimeout. d <= 0 yields 0 (permanent).
func ClampTimeout(d time.Duration) Timeout {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second // round up: never expire early
	if s > time.Duration(MaxTimeout) {
		return MaxTimeout
	}
	return Timeout(s)
}
