//go:build !vallum_lean

package main

import (
	"slices"
	"testing"
	"time"
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
