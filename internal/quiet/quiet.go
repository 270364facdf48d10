// Package quiet bounds the log lines that input from outside can cause
// over and over (refused logins, events, states), so that a flood of
// garbage cannot fill the disk: at most Burst lines per reason in each
// window of Every, and the first line of the next window can say how many
// were left out. The broker's refusals and the keeper use it.
package quiet

import (
	"sync"
	"time"
)

// Burst lines per reason and window of Every.
const (
	Burst = 20
	Every = 10 * time.Second
)

// Windows counts, per reason, the lines of the current window. The zero
// value is ready; Now, when set, is the clock (tests).
type Windows struct {
	Now func() time.Time

	mu  sync.Mutex
	win map[string]*window
}

type window struct {
	start              time.Time
	logged, suppressed int
}

// Allow reports whether a line for reason is logged now, and, when this
// line opens a new window, how many the window before left out.
func (w *Windows) Allow(reason string) (show bool, left int) {
	now := time.Now()
	if w.Now != nil {
		now = w.Now()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.win == nil {
		w.win = map[string]*window{}
	}
	cur := w.win[reason]
	if cur == nil || now.Sub(cur.start) >= Every {
		if cur != nil {
			left = cur.suppressed
		}
		cur = &window{start: now}
		w.win[reason] = cur
	}
	if cur.logged < Burst {
		cur.logged++
		return true, left
	}
	cur.suppressed++
	return false, left
}
