// Command vallum makes an MQTT broker a shared, real-time ban list for
// Linux firewalls: it applies <list>/add and <list>/del messages, and the
// list state kept on the broker, to ipsets or nftables sets.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(realMain()) }

func realMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(os.Stderr, "vallum:", err)
		}
		return 1
	}
	return 0
}

// errSilent is returned by commands that have already said what is wrong.
var errSilent = errors.New("failed")
