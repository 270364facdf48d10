package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
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

// applyMemoryLimit sets the process's soft memory limit from
// --memory-limit, unless GOMEMLIMIT is set (the runtime's own knob wins).
func applyMemoryLimit(c config, log *slog.Logger) error {
	n, err := parseSize(c.MemoryLimit)
	if err != nil || n == 0 {
		return err
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		log.Info("GOMEMLIMIT set: --memory-limit not applied", "gomemlimit", v)
		return nil
	}
	debug.SetMemoryLimit(n)
	return nil
}
