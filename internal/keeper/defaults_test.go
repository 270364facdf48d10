package keeper_test

import (
	"testing"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/keeper"
)

// The keeper refuses what the bridges refuse: the same default limit.
func TestDefaultMaxPayload(t *testing.T) {
	if keeper.DefaultMaxPayload != bridge.DefaultMaxPayload {
		t.Errorf("keeper.DefaultMaxPayload %d, bridge.DefaultMaxPayload %d: want one", keeper.DefaultMaxPayload, bridge.DefaultMaxPayload)
	}
}
