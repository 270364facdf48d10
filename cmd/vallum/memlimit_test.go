package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestLimitFollowsLiveHeap: a process whose live heap outgrows its soft
// limit gets a limit limitHeadroom above that heap after a collection (else
// the collector runs without end); once the heap shrinks, the limit is
// back at the configured one.
func TestLimitFollowsLiveHeap(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	const base = 16 << 20
	debug.SetMemoryLimit(base)
	stop := followLiveHeap(base)
	defer stop()

	held := make([][]byte, 64)
	for i := range held {
		held[i] = make([]byte, 1<<20) // 64 MiB live, four times the limit
	}
	limitAfterGC := func(want func(int64) bool) int64 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			runtime.GC() // the cleanup runs after the cycle, on its own goroutine
			l := debug.SetMemoryLimit(-1)
			if want(l) || time.Now().After(deadline) {
				return l
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	headroom := limitHeadroom
	want := int64(float64(64<<20) * (1 + headroom))
	if l := limitAfterGC(func(l int64) bool { return l >= want }); l < want || l > want+16<<20 {
		t.Errorf("limit %.1f MiB holding 64 MiB: want %.1f MiB or a little more (limitHeadroom above the live heap)", float64(l)/(1<<20), float64(want)/(1<<20))
	}
	runtime.KeepAlive(held)
	held = nil
	if l := limitAfterGC(func(l int64) bool { return l == base }); l != base {
		t.Errorf("limit %d MiB once the heap shrank, want the configured %d MiB", l>>20, base>>20)
	}
	stop()
	debug.SetMemoryLimit(math.MaxInt64)
	runtime.GC()
	runtime.GC()
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Errorf("limit %d after stop: the follower still sets it", l)
	}
}
