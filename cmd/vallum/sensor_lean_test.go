//go:build vallum_lean

package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestSensorWarnedHere: vallum_lean builds leave the sensor out; a
// config that turns it on gets a warning, not a refusal.
func TestSensorWarnedHere(t *testing.T) {
	var logs strings.Builder
	config{Sensor: "blacklist"}.startSensor(context.Background(), nil, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "not in this build (vallum_lean") {
		t.Errorf("log %q: want a warning that says the sensor is not in this build", logs.String())
	}
}
