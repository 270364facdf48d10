//go:build e2e

package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

// TestUserFlowMosquitto is the README's flow: vallum on a host bridging to
// mosquitto on another, bans published with mosquitto_pub.
func TestUserFlowMosquitto(t *testing.T) {
	l, dir := newLab(t)
	hub, host := addHost(t, l, "hub"), addHost(t, l, "host")
	must[*lab.Proc](t)(hub.StartMosquitto(dir, 1883, true))
	v := must[*lab.Proc](t)(host.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-t", "blacklist"))
	for _, m := range []struct{ topic, payload string }{
		{"blacklist/add", "203.0.113.7"},
		{"blacklist/add", "2001:db8::7 timeout 600"},
		{"blacklist/add", "198.51.100.0/24\n203.0.113.9 timeout 3600"},
		{"blacklist/del", "203.0.113.7"},
	} {
		must[string](t)(hub.Exec("mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t", m.topic, "-m", m.payload))
	}
	waitPrefixes(t, host, "blacklist", "198.51.100.0/24", "203.0.113.9")
	waitPrefixes(t, host, "blacklist6", "2001:db8::7")
	if err := v.Stop(); err != nil {
		t.Errorf("vallum on SIGTERM: %v, want exit 0\n%s", err, v.Output())
	}
	waitPrefixes(t, host, "blacklist", "198.51.100.0/24", "203.0.113.9") // stopping never flushes
}

// waitPrefixes polls the host's ipset until it holds exactly want.
func waitPrefixes(t *testing.T, h *lab.Host, set string, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := lab.Eventually(20*time.Second, func() (bool, string) {
		var err error
		got, err = h.Prefixes(set)
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), ""
	})
	if err != nil {
		t.Fatalf("set %s on %s = %v, want %v (%v)", set, h.Name, got, want, err)
	}
}
