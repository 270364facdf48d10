//go:build !vallum_lean

package main

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/wire"
)

// TestSensorConfig: the sensor's keys reach the config from a file, ports
// and ranges of --sensor-ignore-ports included (YAML numbers too).
func TestSensorConfig(t *testing.T) {
	c := loaded(t, "--config", "testdata/good_sensor.yaml")
	if c.Sensor != "blacklist" || c.SensorGroup != 30 || c.SensorPorts != 20 || c.SensorWindow != 30*time.Second ||
		c.SensorRate != 500 || c.SensorBanTime != time.Hour {
		t.Fatalf("loaded %+v", c)
	}
	ports, err := c.sensorIgnore()
	want := []uint16{113, 6000, 6001, 6002, 6003, 6004, 6005, 6006, 6007, 6008, 6009, 6010, 8080, 8443}
	if err != nil || !slices.Equal(ports, want) {
		t.Fatalf("ignored ports %v, %v; want %v", ports, err, want)
	}
	d := loaded(t, "-t", "blacklist")
	if d.Sensor != "" || d.SensorPorts != defaultSensorPorts || d.SensorWindow != defaultSensorWindow || d.SensorBanTime != defaultSensorBanTime {
		t.Fatalf("defaults: %+v", d)
	}
}

// TestSensorReportNeedsLogin: --sensor-report reports under the login's
// name, so a sensor without one is refused at start; with one it starts.
func TestSensorReportNeedsLogin(t *testing.T) {
	args := []string{"-h", "broker.example", "-t", "blacklist", "--sensor", "blacklist", "--sensor-report"}
	c := loaded(t, args...)
	lists, err := c.lists()
	if err != nil {
		t.Fatal(err)
	}
	if !reportsBuilt { // the MIPS builds: refused with or without a login
		for _, c := range []config{c, loaded(t, append(args, "-u", "edge1")...)} {
			if err := c.checkSensor(lists); err == nil || !strings.Contains(err.Error(), "reports are not in this build") {
				t.Errorf("--sensor-report -u %q in a build without reports: %v", c.User, err)
			}
		}
		return
	}
	if err := c.checkSensor(lists); err == nil || !strings.Contains(err.Error(), "--sensor-report needs a login (-u)") {
		t.Fatalf("--sensor-report without a login: %v", err)
	}
	c = loaded(t, append(args, "-u", "edge1")...)
	if err := c.checkSensor(lists); err != nil {
		t.Fatalf("--sensor-report -u edge1: %v", err)
	}
	if !c.SensorReport || c.SensorIPv6Prefix != defaultSensorPrefix6 {
		t.Fatalf("loaded %+v", c)
	}
}

// TestSensorReportBansHereFirst: with --sensor-report a scanner is banned
// in this host's set even when the broker cannot be reached; the error
// says it was not reported.
func TestSensorReportBansHereFirst(t *testing.T) {
	var here []netip.Prefix
	p := &sensorPublisher{root: "blacklist", ttl: 600, bo: &bridge.Options{Broker: "tcp://127.0.0.1:1", Username: "edge1"},
		banHere: func(pfx netip.Prefix, ttl wire.Timeout) error {
			if ttl != 600 {
				t.Errorf("banned here for %d s, want 600", ttl)
			}
			here = append(here, pfx)
			return nil
		}}
	scanner := netip.MustParsePrefix("2001:db8:1::/64")
	err := p.ban(context.Background(), scanner)
	if len(here) != 1 || here[0] != scanner {
		t.Fatalf("banned here %v, want %v", here, scanner)
	}
	if err == nil || !strings.Contains(err.Error(), "banned here, not reported") {
		t.Fatalf("with no broker: %v, want banned here, not reported", err)
	}
}
