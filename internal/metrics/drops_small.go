//go:build vallum_small && (mips || mipsle)

package metrics

import "io"

// drops writes nothing in the MIPS router builds, which have no drop
// counters to read (cmd/vallum's dropsOf): 1 KB of a binary at its limit.
func drops(io.Writer, []Drop) {}

// The MIPS router builds have no scan sensor.
const sensorBuilt = false

func (e *Exporter) sensorCounts() *SensorCounts { return nil }

func sensor(io.Writer, *SensorCounts) {}
