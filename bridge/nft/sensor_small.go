//go:build linux && vallum_small && (mips || mipsle)

package nft

import "github.com/google/nftables"

// SensorRule is empty in the MIPS router builds, which leave the scan
// sensor out (its rules and the socket expression cost a page).
type SensorRule struct{}

const sensorBuilt = false

func (b *Backend) addSensorRules(*nftables.Chain) {}
