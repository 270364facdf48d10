//go:build vallum_lean

package bridge

import (
	"context"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// The hosts' status (presence.go) is not in the 32-bit router builds
// (vallum_small: armv7, mips, mipsle): with it they are over the 10 MB
// goal (mips by 8 KB, armv7 by 2.6 KB). Such a router does not show among
// the hub's hosts; its bans apply as anywhere.
type Presence struct {
	Off              bool
	Version, Backend string
	Every            time.Duration
	_                [0]func() // not comparable: no equality function to link
}

// PresenceBuilt says whether this build publishes the host's status.
const PresenceBuilt = false

const presenceBuilt = PresenceBuilt

// Never called (presenceBuilt), but compiled.
func (s *Stats) noteSync()                                          {}
func (b *Bridge) setWill(*mqtt.ClientOptions)                       {}
func (b *Bridge) startPresence(context.Context, mqtt.Client) func() { return nil }
func (b *Bridge) connectNoWill(_ context.Context, refused error) (mqtt.Client, error) {
	return nil, refused
}

type syncStats struct{}
