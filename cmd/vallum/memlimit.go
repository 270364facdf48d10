package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
)

// defaultMemoryLimit is the soft memory limit of a process that runs the
// embedded broker. The Go runtime lets the heap grow to about twice what
// is live before it collects: a hub holding 1,000,000 bans as chunks was
// at 300 MB resident without a limit, 181 MB with 200 MiB (docs/compact-
// list.md). A soft limit only makes the collector work sooner; a hub whose
// live heap nears it collects again and again (at most half the CPU), so
// the limit follows the live heap when it outgrows it (followLiveHeap).
const defaultMemoryLimit = "200MiB"

// parseSize reads a byte count: digits with an optional KiB, MiB, GiB (or
// KB, MB, GB, powers of ten) suffix; "0" is none.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("--memory-limit %q: want a size such as 200MiB, or 0 for none", s)
	}
	return n * mult, nil
}

// hubGCPercent is the garbage collector's target of a process that runs
// the embedded broker (Go's GOGC, which wins when set): the heap grows by
// half of what is live before a collection, not by all of it. Measured
// with e2e/hubmem, a hub holding 100,000 bans as chunks: 129 MB resident,
// 177 MB while hosts joined, at Go's 100; 73 MB and 81 MB at 50.
const hubGCPercent = 50

// applyMemoryLimit sets the process's soft memory limit from
// --memory-limit, raised as the live heap outgrows it (followLiveHeap),
// unless GOMEMLIMIT is set (the runtime's own knob wins), and the
// collector's target to hubGCPercent unless GOGC is set.
func applyMemoryLimit(c config, log *slog.Logger) error {
	n, err := parseSize(c.MemoryLimit)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(hubGCPercent)
	}
	if n == 0 {
		return nil
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		log.Info("GOMEMLIMIT set: --memory-limit not applied", "gomemlimit", v)
		return nil
	}
	debug.SetMemoryLimit(n)
	followLiveHeap(n)
	return nil
}

// limitHeadroom: the soft limit stays at least this fraction of the live
// heap above it (the heap the last collection kept), so a hub whose list
// outgrows the limit collects as if with GOGC 12, not without end.
// Measured with e2e TestImportMillion, a hub holding an imported million
// (216 MB live: the keeper's view and expiry heap, mochi's chunks, each
// ban with a timeout), one host joining it, on a quiet machine: at the
// limit alone the hub collected 23 times during the join (2.8 s of its
// CPU; the join 5.3 s); without a limit once (0.27 s; 3.4 s), but at
// 292 MB once still and 525 MB at its peak; at 12 %, 6 and 8 times
// (0.54 and 0.87 s; 2.2 and 2.6 s), 256 and 285 MB right after the join.
// A joiner's read holds a copy of every chunk until acknowledged (mochi
// copies each retained message it sends): 49 MB at that million, so the
// live heap grows during a join and the limit with it; at 25 % the join
// took 2.0 to 4.1 s but the benchmark's hub was at 321 MB after it
// (hub_rss_1m_mb, the target under 300), at 12 % 284, 301 and 304 MB
// (main before: 274 to 300). The broker
// returns those copies' memory after the join (broker joinFreer).
const limitHeadroom = 0.12

// following is the generation of the follower that runs: the limit is
// the process's, so a new follower ends the one before.
var following atomic.Uint64

// followLiveHeap sets the soft limit after each collection to
// limitHeadroom above the live heap, never below base, until stop or
// the next followLiveHeap.
func followLiveHeap(base int64) (stop func()) {
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	gen := following.Add(1)
	var arm func()
	arm = func() {
		// A sentinel the next collection frees: its cleanup runs once
		// per cycle and arms the next.
		runtime.AddCleanup(new([64]byte), func(int) {
			if following.Load() != gen {
				return
			}
			metrics.Read(live)
			n := int64(live[0].Value.Uint64())
			debug.SetMemoryLimit(max(base, n+int64(float64(n)*limitHeadroom)))
			arm()
		}, 0)
	}
	arm()
	return func() { following.CompareAndSwap(gen, gen+1) }
}
