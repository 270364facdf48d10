package main

import (
	"errors"
	"fmt"
	"net"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/guard"
)

// checkLimits refuses numbers that would make the daemon useless rather
// than fail: a --max-payload below 1 refuses every message, a prefix limit
// of 0 falls back to the default the user meant to change, a set of no
// capacity takes nothing; and settings the daemon refuses only later, at
// its start (--nft-rules without nft, a --metrics address without a
// port). The daemon and check-config both call it.
func (c config) checkLimits() error {
	var errs []error
	if c.MaxPayload < 1 {
		errs = append(errs, fmt.Errorf("--max-payload %d: must be 1 byte or more (every message would be refused; default %d)", c.MaxPayload, bridge.DefaultMaxPayload))
	}
	if c.WidestV4 < 1 || c.WidestV4 > 32 {
		errs = append(errs, fmt.Errorf("--widest-v4 %d: must be 1-32 (the broadest IPv4 prefix a ban may have; default %d)", c.WidestV4, guard.DefaultWidest4))
	}
	if c.WidestV6 < 1 || c.WidestV6 > 128 {
		errs = append(errs, fmt.Errorf("--widest-v6 %d: must be 1-128 (the broadest IPv6 prefix a ban may have; default %d)", c.WidestV6, guard.DefaultWidest6))
	}
	if c.MaxElem < 1 {
		errs = append(errs, fmt.Errorf("--maxelem 0: a set must hold at least one entry (default %d)", bridge.DefaultMaxElem))
	}
	if c.QoS < 0 || c.QoS > 2 {
		errs = append(errs, fmt.Errorf("--qos %d: use 0, 1 or 2", c.QoS))
	}
	if c.Host != "" && len(c.Broker) == 0 && (c.Port < 1 || c.Port > 65535) {
		errs = append(errs, fmt.Errorf("--port %d: must be 1-65535", c.Port))
	}
	if c.NftRules && c.Backend != "nft" && c.Backend != "auto" {
		errs = append(errs, fmt.Errorf("--nft-rules needs --backend nft (backend is %q)", c.Backend))
	}
	if keeperBuilt && c.Keeper && c.embedded() {
		errs = append(errs, errors.New("--keeper needs -h or --broker: the embedded broker keeps its lists itself"))
	}
	if _, _, err := net.SplitHostPort(c.Metrics); c.Metrics != "" && err != nil {
		errs = append(errs, fmt.Errorf("--metrics %q: want HOST:PORT, such as 127.0.0.1:9101", c.Metrics))
	}
	return errors.Join(errs...)
}
