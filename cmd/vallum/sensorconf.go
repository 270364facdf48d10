//go:build !vallum_lean

package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/wire"
)

// Sensor defaults. They live here rather than in internal/sensor so that
// vallum_lean builds, which leave the sensor out, still know the flags.
const (
	defaultSensorGroup   = 27
	defaultSensorPorts   = 10
	defaultSensorWindow  = time.Minute
	defaultSensorRate    = 1000
	defaultSensorBanTime = 24 * time.Hour
	maxSensorPorts       = 1024 // internal/sensor.MaxPorts
	defaultSensorPrefix6 = 64   // internal/sensor.DefaultPrefix6
)

// sensorFlags are the scan sensor's settings.
func sensorFlags(f *pflag.FlagSet) {
	f.String("sensor", "", "list topic ROOT on which addresses that scan closed TCP or UDP ports are banned (reason portscan); empty: no sensor")
	f.Int("sensor-group", defaultSensorGroup, "NFLOG group the firewall logs SYNs and new UDP flows to closed ports to (--nft-rules adds those rules)")
	f.Int("sensor-ports", defaultSensorPorts, "a source (an address, an IPv6 /64) touching more than this many distinct closed ports within --sensor-window is banned")
	f.Duration("sensor-window", defaultSensorWindow, "the window of --sensor-ports")
	f.StringArray("sensor-ignore-ports", nil, "ports or ranges (113, 6000-6010) that never count, TCP and UDP, repeatable or separated by commas")
	f.Int("sensor-rate", defaultSensorRate, "logged packets read per second at most (and the rate limit of each rule --nft-rules adds); the rest are counted as overload")
	f.Duration("sensor-ban-time", defaultSensorBanTime, "how long a scanner's ban lasts; 0: permanent")
	f.Int("sensor-ipv6-prefix", defaultSensorPrefix6, "IPv6 prefix length counted and banned as one source (64: a scanner rotating the low 64 bits of its address; 128: each address)")
	f.Bool("sensor-report", false, "report scanners to the list's keeper under this login (vallum ban --report: the keeper's quorum decides) and ban them here at once, instead of banning them on the list")
}

// checkSensor refuses sensor settings the daemon could not use.
func (c config) checkSensor(lists []bridge.List) error {
	if c.Sensor == "" {
		return nil
	}
	var errs []error
	found := false
	for _, l := range lists {
		found = found || l.Root == c.Sensor
	}
	if !found {
		errs = append(errs, fmt.Errorf("--sensor %q: no such list: name a list topic's ROOT as given to -t", c.Sensor))
	}
	if c.SensorGroup < 0 || c.SensorGroup > 65535 {
		errs = append(errs, fmt.Errorf("--sensor-group %d: must be 0-65535", c.SensorGroup))
	}
	if c.SensorPorts < 1 || c.SensorPorts > maxSensorPorts {
		errs = append(errs, fmt.Errorf("--sensor-ports %d: must be 1-%d", c.SensorPorts, maxSensorPorts))
	}
	if c.SensorWindow <= 0 {
		errs = append(errs, fmt.Errorf("--sensor-window %v: must be above 0", c.SensorWindow))
	}
	if c.SensorRate < 1 {
		errs = append(errs, fmt.Errorf("--sensor-rate %d: must be 1 or more", c.SensorRate))
	}
	if c.SensorBanTime < 0 {
		errs = append(errs, fmt.Errorf("--sensor-ban-time %v: must be 0 (permanent) or more", c.SensorBanTime))
	}
	if c.SensorIPv6Prefix < 1 || c.SensorIPv6Prefix > 128 {
		errs = append(errs, fmt.Errorf("--sensor-ipv6-prefix %d: must be 1-128", c.SensorIPv6Prefix))
	}
	if c.SensorReport {
		errs = append(errs, c.checkSensorReport())
	}
	_, err := c.sensorIgnore()
	return errors.Join(append(errs, err)...)
}

// checkSensorReport refuses --sensor-report where no report can be made:
// the reports are under the login's name, and the hub's own bridge has no
// login of the user's.
func (c config) checkSensorReport() error {
	switch {
	case !reportsBuilt:
		return errors.New("--sensor-report: reports are not in this build")
	case c.embedded():
		return errors.New("--sensor-report: not on the hub (with the embedded broker): a sensor reports to the hub's keeper under its own login (-u)")
	}
	if err := wire.ValidReporter(c.User); err != nil {
		return fmt.Errorf("--sensor-report needs a login (-u) to report under: %w", err)
	}
	return nil
}

// sensorIgnore parses --sensor-ignore-ports.
func (c config) sensorIgnore() ([]uint16, error) {
	var ports []uint16
	for _, a := range c.SensorIgnorePorts {
		for _, f := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' }) {
			lo, hi, isRange := strings.Cut(f, "-")
			if !isRange {
				hi = lo
			}
			l, err1 := strconv.ParseUint(lo, 10, 16)
			h, err2 := strconv.ParseUint(hi, 10, 16)
			if err1 != nil || err2 != nil || l < 1 || h < l {
				return nil, fmt.Errorf("--sensor-ignore-ports %q: want ports 1-65535 or ranges such as 6000-6010", f)
			}
			for p := l; p <= h; p++ {
				ports = append(ports, uint16(p))
			}
		}
	}
	return ports, nil
}
