//go:build vallum_small && (mips || mipsle)

package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestSensorWarnedHere: the MIPS router builds leave the sensor out; a
// config that turns it on gets a warning, not a refusal.
func TestSensorWarnedHere(t *testing.T) {
	var logs strings.Builder
	config{Sensor: "blacklist"}.startSensor(context.Background(), nil, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "not in the MIPS router builds") {
		t.Errorf("log %q: want a warning that says the sensor is not in this build", logs.String())
	}
}
