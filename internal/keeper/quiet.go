package keeper

import (
	"context"
	"log/slog"
	"time"

	"github.com/vallum/vallum/internal/quiet"
)

// logQuiet logs what a client can cause over and over (refused events and
// states, failed publishes) at most quiet.Burst lines per reason and
// window, so that a flood of garbage cannot fill the disk; the first line
// of the next window says how many were not logged.
type logQuiet struct {
	log   *slog.Logger
	lines quiet.Windows
}

func newQuiet(log *slog.Logger, now func() time.Time) *logQuiet {
	return &logQuiet{log: log, lines: quiet.Windows{Now: now}}
}

func (q *logQuiet) warn(reason, msg string, args ...any)  { q.emit(slog.LevelWarn, reason, msg, args) }
func (q *logQuiet) error(reason, msg string, args ...any) { q.emit(slog.LevelError, reason, msg, args) }

func (q *logQuiet) emit(level slog.Level, reason, msg string, args []any) {
	show, left := q.lines.Allow(reason)
	if !show {
		return
	}
	if left > 0 { // said in the window's first line
		args = append(args, "not_logged_before", left)
	}
	q.log.Log(context.Background(), level, msg, args...)
}
