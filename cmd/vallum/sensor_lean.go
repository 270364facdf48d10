//go:build vallum_lean

package main

import (
	"context"
	"log/slog"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/nft"
	"github.com/vallum/vallum/internal/metrics"
)

// The scan sensor (internal/sensor, go-nflog) is not in vallum_lean builds
// (kill_lean.go): it does not fit there under the 10 MB goal. startSensor
// warns and the daemon runs without it, as with --kill-connections.
const sensorBuilt = false

func (c config) sensorRule(*nft.Backend) {}

// sensorFlags has --sensor only, so that it warns rather than fail; the
// other sensor keys are known to the config file and ignored.
func sensorFlags(f *pflag.FlagSet) {
	f.String("sensor", "", "not in this build")
}

func (c config) checkSensor([]bridge.List) error { return nil }

func (c config) startSensor(_ context.Context, _ *errgroup.Group, _ *bridge.Options, _ *metrics.Exporter, log *slog.Logger) {
	if c.Sensor != "" {
		log.Warn("--sensor is not in this build (vallum_lean, for size): no scan sensor")
	}
}
