package main

import (
	"errors"
	"fmt"

	"github.com/vallum/vallum/bridge"
)

// checkLimits refuses numbers that would make the daemon useless rather
// than fail: a --max-payload below 1 refuses every message, a prefix limit
// of 0 falls back to the default the user meant to change, a set of no
// capacity takes nothing. The daemon and check-config both call it.
func (c config) checkLimits() error {
	var errs []error
	if c.MaxPayload < 1 {
		errs = append(errs, fmt.Errorf("--max-payload %d: must be 1 byte or more (every message would be refused; default %d)", c.MaxPayload, bridge.DefaultMaxPayload))
	}
	if c.WidestV4 < 1 || c.WidestV4 > 32 {
		errs = append(errs, fmt.Errorf("--widest-v4 %d: must be 1-32 (the broadest IPv4 prefix a ban may have; default %d)", c.WidestV4, bridge.DefaultWidest4))
	}
	if c.WidestV6 < 1 || c.WidestV6 > 128 {
		errs = append(errs, fmt.Errorf("--widest-v6 %d: must be 1-128 (the broadest IPv6 prefix a ban may have; default %d)", c.WidestV6, bridge.DefaultWidest6))
	}
	if c.MaxElem < 1 {
		errs = append(errs, fmt.Errorf("--maxelem 0: a set must hold at least one entry (default %d)", bridge.DefaultMaxElem))
	}
	if c.QoS < 0 || c.QoS > 2 {
		errs = append(errs, fmt.Errorf("--qos %d: use 0, 1 or 2", c.QoS))
	}
	if c.Host != "" && c.Broker == "" && (c.Port < 1 || c.Port > 65535) {
		errs = append(errs, fmt.Errorf("--port %d: must be 1-65535", c.Port))
	}
	return errors.Join(errs...)
}
