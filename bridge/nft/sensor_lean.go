//go:build linux && vallum_lean

package nft

import "github.com/google/nftables"

// SensorRule is empty in vallum_lean builds, which leave the scan sensor
// out (its rules and the socket expression cost a page).
type SensorRule struct{}

const sensorBuilt = false

func (b *Backend) addSensorRules(*nftables.Chain) {}
