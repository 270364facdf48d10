//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/vallum/vallum/internal/lab"
)

// TestDoctor: on a host whose sets nothing uses, `vallum doctor` fails and
// says which rule is missing; once rules drop the sets' members, it passes.
func TestDoctor(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "h")
	must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-t", "blacklist"))
	out, err := h.Exec(vallumBin, "doctor", "-t", "blacklist")
	if err == nil || !strings.Contains(out, "FAIL a firewall rule drops members of blacklist") || !strings.Contains(out, "--match-set blacklist src") {
		t.Fatalf("doctor without rules: err %v, output:\n%s\nwant a failure naming the missing rule and how to add it", err, out)
	}
	if !strings.Contains(out, "ok   set blacklist: hash:net inet") || !strings.Contains(out, "ok   broker 127.0.0.1:1883") {
		t.Errorf("doctor output lacks the set and broker checks:\n%s", out)
	}
	must[string](t)(h.Exec("iptables", "-I", "INPUT", "-m", "set", "--match-set", "blacklist", "src", "-j", "DROP"))
	must[string](t)(h.Exec("ip6tables", "-I", "INPUT", "-m", "set", "--match-set", "blacklist6", "src", "-j", "DROP"))
	if out, err := h.Exec(vallumBin, "doctor", "-t", "blacklist"); err != nil {
		t.Fatalf("doctor with rules: %v\n%s", err, out)
	}
}
