//go:build vallum_small && (mips || mipsle)

package main

import (
	"log/slog"
	"strings"
	"testing"
)

// TestKillConnectionsRefusedHere: the MIPS router builds leave the feature
// out, and say so rather than start without it.
func TestKillConnectionsRefusedHere(t *testing.T) {
	c := config{Topic: []string{"blacklist"}, KillConnections: []string{"blacklist"}, Backend: "ipset",
		ClientID: "x", QoS: 1, MaxPayload: 1024, WidestV4: 8, WidestV6: 32, MaxElem: 1}
	_, err := c.bridgeOptions(slog.Default())
	if err == nil || !strings.Contains(err.Error(), "--kill-connections: not in the MIPS router builds") {
		t.Errorf("bridgeOptions with --kill-connections = %v, want it refused", err)
	}
}
