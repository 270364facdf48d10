package main

import (
	"errors"
	"fmt"
	"syscall"
)

// portInUse adds what to do when the embedded broker's port is taken:
// most often another broker (mosquitto, or a vallum already running)
// listens there, which the daemon can use instead with -h.
func portInUse(err error, daemon bool) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	if daemon {
		return fmt.Errorf("%w: another broker (mosquitto, or a vallum already running) may listen there; "+
			"to use it instead of the embedded broker, give -h 127.0.0.1 (and -p PORT); or give the embedded one --listen with a free port", err)
	}
	return fmt.Errorf("%w: another broker (mosquitto, or a vallum already running) may listen there; stop it, or give --listen a free port", err)
}
