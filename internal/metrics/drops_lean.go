//go:build vallum_lean

package metrics

import "io"

// drops writes nothing in vallum_lean builds, which have no drop counters
// to read (cmd/vallum's dropsOf): 1 KB of a binary at its limit.
func drops(io.Writer, []Drop) {}

// vallum_lean builds have no scan sensor.
const sensorBuilt = false

func (e *Exporter) sensorCounts() *SensorCounts { return nil }

func sensor(io.Writer, *SensorCounts) {}
