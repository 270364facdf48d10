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
// live heap is above it runs as without one, the collector capped at half
// the CPU.
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
// --memory-limit, unless GOMEMLIMIT is set (the runtime's own knob wins),
// and the collector's target to hubGCPercent unless GOGC is set.
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
// outgrows the limit collects as if with GOGC 25, not without end. At the
// limit alone, a hub holding an imported million (216 MB live, 1,000,000
// bans with a timeout each: the keeper's view and expiry heap, mochi's
// chunks) collected 23 times while one host joined (2.8 s of its CPU, the
// join 5.3 s on a quiet machine); without a limit, once (0.27 s, 3.4 s).
// A joiner's read holds a copy of every chunk until acknowledged (mochi
// copies each retained message it sends): 49 MB at that million, a
// quarter of the live heap.
const limitHeadroom = 0.25

// followLiveHeap sets the soft limit after each collection to
// limitHeadroom above the live heap, never below base, until stop.
func followLiveHeap(base int64) (stop func()) {
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var stopped atomic.Bool
	var arm func()
	arm = func() {
		// A sentinel the next collection frees: its cleanup runs once
		// per cycle and arms the next.
		runtime.AddCleanup(new([64]byte), func(int) {
			if stopped.Load() {
				return
			}
			metrics.Read(live)
			n := int64(live[0].Value.Uint64())
			debug.SetMemoryLimit(max(base, n+int64(float64(n)*limitHeadroom)))
			arm()
		}, 0)
	}
	arm()
	return func() { stopped.Store(true) }
}
