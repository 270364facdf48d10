//go:build e2e

package e2e

import (
	"syscall"
	"testing"

	"github.com/vallum/vallum/internal/lab"
)

// TestHUPResync: a firewall reload that destroys the sets (nftables'
// `flush ruleset`, a hand-made `ipset destroy`) is repaired by SIGHUP: the
// sets come back with every ban the broker holds, and vallum keeps running.
func TestHUPResync(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "h")
	v := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-t", "blacklist"))
	must[string](t)(h.Exec(vallumBin, "ban", "blacklist", "203.0.113.5", "--timeout", "1h"))
	must[string](t)(h.Exec(vallumBin, "ban", "blacklist", "2001:db8::5"))
	waitPrefixes(t, h, "blacklist", "203.0.113.5")
	waitPrefixes(t, h, "blacklist6", "2001:db8::5")
	must[string](t)(h.Exec("ipset", "destroy", "blacklist"))
	must[string](t)(h.Exec("ipset", "destroy", "blacklist6"))
	v.Signal(syscall.SIGHUP)
	waitPrefixes(t, h, "blacklist", "203.0.113.5")
	waitPrefixes(t, h, "blacklist6", "2001:db8::5")
	if v.Exited() {
		t.Fatalf("vallum exited on SIGHUP:\n%s", v.Output())
	}
	must[string](t)(h.Exec(vallumBin, "unban", "blacklist", "203.0.113.5"))
	waitPrefixes(t, h, "blacklist") // still applying after the resync
}
