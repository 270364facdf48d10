//go:build !vallum_lean

package metrics

import (
	"fmt"
	"io"
)

// drops writes the counters of vallum's own drop rules.
func drops(w io.Writer, ds []Drop) {
	header(w, "vallum_dropped_packets_total", "Packets vallum's own drop rules dropped (from the list's members, and to them on forward with --kill-connections).")
	for _, d := range ds {
		fmt.Fprintf(w, "vallum_dropped_packets_total{list=%q,family=%q} %d\n", d.List, d.Family, d.Packets)
	}
	header(w, "vallum_dropped_bytes_total", "Bytes of those packets.")
	for _, d := range ds {
		fmt.Fprintf(w, "vallum_dropped_bytes_total{list=%q,family=%q} %d\n", d.List, d.Family, d.Bytes)
	}
}

const sensorBuilt = true // vallum_lean builds have no scan sensor

// sensorCounts reads the scan sensor's counters; nil: no sensor.
func (e *Exporter) sensorCounts() *SensorCounts {
	if e.Sensor == nil {
		return nil
	}
	s := e.Sensor()
	return &s
}

// sensor writes the scan sensor's counters, if it runs.
func sensor(w io.Writer, s *SensorCounts) {
	if s != nil {
		scalars(w, sensorScalars[:], s.Packets, s.Bans, s.Overload, s.Tracked)
	}
}

var sensorScalars = [...]desc{
	{"vallum_sensor_packets_total", "Logged SYNs and new UDP flows to closed ports the scan sensor read."},
	{"vallum_sensor_bans_total", "Scanners the sensor banned (reason portscan), or banned here and reported with --sensor-report."},
	{"vallum_sensor_overload_total", "What the sensor dropped under load: logged packets over --sensor-rate, overflows of its socket buffer (one each, however many packets), bans over its queue."},
	{"vallum_sensor_tracked_sources", "Sources (IPv4 addresses, IPv6 /64s) the sensor tracks (bounded at 65,536)."},
}
