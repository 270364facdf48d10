package bridge

import (
	"log/slog"
	"sync"
	"time"
)

// refusals logs refused input once per cause and key, at most rate lines a
// second, so that a flood of garbage cannot fill the disk; every refusal is
// still counted.
type refusals struct {
	log   *slog.Logger
	stats *Stats

	mu         sync.Mutex
	seen       map[string]struct{}
	tokens     float64
	last       time.Time
	suppressed int64
}

const (
	refuseRate = 20    // log lines per second, sustained
	refuseSeen = 10000 // distinct causes remembered before forgetting all
)

func newRefusals(log *slog.Logger, stats *Stats) *refusals {
	return &refusals{log: log, stats: stats, seen: map[string]struct{}{}, tokens: refuseRate}
}

// refuse counts a refusal under reason and logs it unless the same reason
// and key was logged before or the rate is exceeded.
func (r *refusals) refuse(reason, key string, attrs ...any) {
	r.stats.inc(&r.stats.refused, reason, 1)
	if !r.allow(reason + "\x00" + key) {
		return
	}
	r.log.Warn("refused", append([]any{"reason", reason}, attrs...)...)
}

func (r *refusals) allow(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.seen[key]; dup {
		return false
	}
	if len(r.seen) >= refuseSeen {
		clear(r.seen)
	}
	r.seen[key] = struct{}{}
	now := time.Now()
	r.tokens = min(refuseRate, r.tokens+now.Sub(r.last).Seconds()*refuseRate)
	r.last = now
	if r.tokens < 1 {
		r.suppressed++
		return false
	}
	r.tokens--
	if r.suppressed > 0 {
		r.log.Warn("refusals not logged: rate limit", "count", r.suppressed)
		r.suppressed = 0
	}
	return true
}

// kernel logs an op the kernel refused; the caller counts it as an error.
func (r *refusals) kernel(set string, f OpError) {
	if r.allow("kernel\x00" + set + " " + f.Op.Prefix.String()) {
		r.log.Warn("kernel refused", "set", set, "prefix", f.Op.Prefix, "op", f.Op.Action.String(), "err", f.Err)
	}
}
