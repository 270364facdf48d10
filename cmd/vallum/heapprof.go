//go:build heapprof

package main

import (
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
)

// A measuring build only (go build -tags heapprof): on SIGUSR1 the
// process collects and writes a heap profile to $VALLUM_HEAPPROF (the
// e2e's measurement of the hub holding an imported million). The product
// has no such hook.
func init() {
	path := os.Getenv("VALLUM_HEAPPROF")
	if path == "" {
		return
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	go func() {
		for range c {
			runtime.GC()
			if f, err := os.Create(path + ".tmp"); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
				os.Rename(path+".tmp", path)
			}
		}
	}()
}
