package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vallum/vallum/bridge"
)

// doctor's fix for a set no rule uses names the tool of the set's family:
// ip6tables for the IPv6 set (iptables refuses an IPv6 set).
func TestDoctorRuleFixPerFamily(t *testing.T) {
	lists := []bridge.List{{Root: "blacklist", Set4: "blacklist", Set6: "blacklist6"}}
	var b bytes.Buffer
	report(&b, rulesUsing("ipset", lists, "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"))
	out := b.String()
	for _, want := range []string{
		"iptables -I INPUT -m set --match-set blacklist src -j DROP",
		"ip6tables -I INPUT -m set --match-set blacklist6 src -j DROP",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor does not suggest %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, " iptables -I INPUT -m set --match-set blacklist6") {
		t.Errorf("doctor suggests iptables for the IPv6 set:\n%s", out)
	}
	// A rule in ip6tables-save's dump counts for the IPv6 set.
	fs := rulesUsing("ipset", lists, "-A INPUT -m set --match-set blacklist6 src -j DROP\n")
	if fs[0].ok || !fs[1].ok {
		t.Errorf("with a rule on blacklist6 only: got %+v", fs)
	}
}
