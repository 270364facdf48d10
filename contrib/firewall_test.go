package contrib_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fw4Ruleset is the part of what fw4 renders that matters to an include in
// ruleset-post: its own table, flushed and declared, then the include.
const fw4Ruleset = `
table inet fw4
flush table inet fw4
table inet fw4 {
	chain input {
		type filter hook input priority filter; policy drop;
		iifname "lo" accept comment "!fw4: Accept traffic from loopback"
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
	}
}
`

// inNetns runs script under sh in a new network namespace of its own
// (unshare -n), so nothing it creates reaches the host, and returns its
// combined output. It skips unless root and the tools exist.
func inNetns(t *testing.T, script string, tools ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (nft -c and kernel sets need CAP_NET_ADMIN)")
	}
	for _, tool := range append([]string{"unshare", "sh"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	out, err := exec.Command("unshare", "-n", "sh", "-eu", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("in netns: %v\n%s", err, out)
	}
	return string(out)
}

// nftScript loads the ruleset in file twice, around a ban of 127.0.0.2,
// and checks with a real packet (over lo) that the ban drops it.
func nftScript(file string) string {
	return `
ip link set lo up
nft -c -f ` + shellQuote(file) + `
echo check ok
nft -f ` + shellQuote(file) + `
nft add element inet vallum blacklist '{ 127.0.0.2 timeout 1h }'
nft add element inet vallum blacklist_net '{ 198.51.100.0/24 }'
nft add element inet vallum blacklist6 '{ 2001:db8::1 }'
nft -f ` + shellQuote(file) + `
if ping -c 1 -W 0.3 127.0.0.2 >/dev/null 2>&1; then echo ping passed; else echo ping dropped; fi
nft list table inet vallum
`
}

// ruleRE matches one drop rule of a listed chain, counter included.
var ruleRE = regexp.MustCompile(`(?m)^\s+(ip6? saddr @\w+) counter packets (\d+) bytes \d+ drop$`)

func checkNftOutput(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{
		"check ok",
		"ping dropped",
		"127.0.0.2 timeout 1h",
		"198.51.100.0/24",
		"2001:db8::1",
		"type filter hook input priority filter - 10; policy accept;",
		"type filter hook forward priority filter - 10; policy accept;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q (members kept across a reload, drop works):\n%s", want, out)
		}
	}
	// Two chains of four rules each: a reload must not duplicate them.
	rules := ruleRE.FindAllStringSubmatch(out, -1)
	if len(rules) != 8 {
		t.Errorf("found %d drop rules after loading twice, want 8:\n%s", len(rules), out)
	}
	if len(rules) > 0 && rules[0][1] == "ip saddr @blacklist" && rules[0][2] == "0" {
		t.Errorf("input rule %q counted no packet after the ping", rules[0][1])
	}
}

func TestNftablesFile(t *testing.T) {
	out := inNetns(t, nftScript(filepath.Join("firewall", "vallum.nft")), "nft", "ip", "ping")
	checkNftOutput(t, out)
}

func TestFw4Include(t *testing.T) {
	// fw4 renders its table and then the ruleset-post includes, in one
	// nft -f; the check runs on that whole text, as `fw4 check` does.
	inc, err := os.ReadFile(filepath.Join("openwrt", "files", "vallum.nft"))
	if err != nil {
		t.Fatal(err)
	}
	rendered := filepath.Join(t.TempDir(), "fw4.nft")
	if err := os.WriteFile(rendered, []byte(fw4Ruleset+string(inc)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := inNetns(t, nftScript(rendered)+`
echo "--- fw4 restart"
nft delete table inet fw4
nft -f `+shellQuote(rendered)+`
nft list set inet vallum blacklist
`, "nft", "ip", "ping")
	checkNftOutput(t, out)
	_, afterRestart, _ := strings.Cut(out, "--- fw4 restart")
	if !strings.Contains(afterRestart, "127.0.0.2") {
		t.Errorf("a ban did not survive fw4 restart (delete table inet fw4, load again):\n%s", afterRestart)
	}
}

func TestIptablesScript(t *testing.T) {
	script := filepath.Join("firewall", "iptables.sh")
	out := inNetns(t, `
iptables -N DOCKER-USER
iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
sh `+shellQuote(script)+`
sh `+shellQuote(script)+`
echo "--- v4"; iptables -S
echo "--- v6"; ip6tables -S
echo "--- sets"; ipset list -t
sh `+shellQuote(script)+` -D
echo "--- removed"; iptables -S; ip6tables -S
DST=1 sh `+shellQuote(script)+`
DST=1 sh `+shellQuote(script)+`
echo "--- dst"; iptables -S; ip6tables -S
DST=1 sh `+shellQuote(script)+` -D
echo "--- dst removed"; iptables -S; ip6tables -S
`, "iptables", "ip6tables", "ipset")
	sections := map[string]string{}
	for _, part := range strings.Split(out, "--- ")[1:] {
		name, body, _ := strings.Cut(part, "\n")
		sections[name] = body
	}
	for _, chain := range []string{"INPUT", "FORWARD", "DOCKER-USER"} {
		for fam, set := range map[string]string{"v4": "blacklist", "v6": "blacklist6"} {
			rule := "-A " + chain + " -m set --match-set " + set + " src -j DROP"
			if chain == "DOCKER-USER" && fam == "v6" {
				continue // no DOCKER-USER chain in ip6tables here
			}
			if n := strings.Count(sections[fam], rule); n != 1 {
				t.Errorf("%s: %q appears %d times after two runs, want 1:\n%s", fam, rule, n, sections[fam])
			}
		}
	}
	for _, want := range []string{"Name: blacklist\n", "Name: blacklist6\n", "Type: hash:net", "family inet6", "timeout 0", "comment"} {
		if !strings.Contains(sections["sets"], want) {
			t.Errorf("sets lack %q:\n%s", want, sections["sets"])
		}
	}
	if strings.Contains(sections["removed"], "match-set") {
		t.Errorf("rules left after -D:\n%s", sections["removed"])
	}
	// The drop comes before the ESTABLISHED accept, or it cuts nothing open.
	if v4 := sections["v4"]; strings.Index(v4, "-A INPUT -m set") > strings.Index(v4, "-A INPUT -m conntrack") {
		t.Errorf("INPUT drop after the ESTABLISHED accept:\n%s", v4)
	}
	if strings.Contains(sections["v4"], " dst -j DROP") {
		t.Errorf("dst drops without DST=1:\n%s", sections["v4"])
	}
	for _, rule := range []string{
		"-A FORWARD -m set --match-set blacklist dst -j DROP", "-A FORWARD -m set --match-set blacklist6 dst -j DROP",
		"-A DOCKER-USER -m set --match-set blacklist dst -j DROP", "-A FORWARD -m set --match-set blacklist src -j DROP",
	} {
		if n := strings.Count(sections["dst"], rule); n != 1 {
			t.Errorf("DST=1: %q appears %d times after two runs, want 1:\n%s", rule, n, sections["dst"])
		}
	}
	if strings.Contains(sections["dst"], "-A INPUT -m set --match-set blacklist dst") {
		t.Errorf("DST=1 drops to the members on INPUT:\n%s", sections["dst"])
	}
	if strings.Contains(sections["dst removed"], "match-set") {
		t.Errorf("rules left after DST=1 -D:\n%s", sections["dst removed"])
	}
}
