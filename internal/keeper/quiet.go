package keeper

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// quiet logs what a client can cause over and over (refused events and
// states, failed publishes) at most quietBurst lines per reason and
// window, so that a flood of garbage cannot fill the disk; the first line
// of the next window says how many were not logged.
type quiet struct {
	log *slog.Logger
	now func() time.Time
	mu  sync.Mutex
	win map[string]*window
}

type window struct {
	start              time.Time
	logged, suppressed int
}

const (
	quietBurst = 20
	quietEvery = 10 * time.Second
)

func newQuiet(log *slog.Logger, now func() time.Time) *quiet {
	return &quiet{log: log, now: now, win: map[string]*window{}}
}

func (q *quiet) warn(reason, msg string, args ...any)  { q.emit(slog.LevelWarn, reason, msg, args) }
func (q *quiet) error(reason, msg string, args ...any) { q.emit(slog.LevelError, reason, msg, args) }

func (q *quiet) emit(level slog.Level, reason, msg string, args []any) {
	now := q.now()
	q.mu.Lock()
	w := q.win[reason]
	if w == nil || now.Sub(w.start) >= quietEvery {
		if w != nil && w.suppressed > 0 { // said in the window's first line
			args = append(args, "not_logged_before", w.suppressed)
		}
		w = &window{start: now}
		q.win[reason] = w
	}
	ok := w.logged < quietBurst
	if ok {
		w.logged++
	} else {
		w.suppressed++
	}
	q.mu.Unlock()
	if ok {
		q.log.Log(context.Background(), level, msg, args...)
	}
}
