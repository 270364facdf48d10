//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/fail2ban"
	"github.com/vallum/vallum/internal/lab"
)

// TestFail2ban runs real fail2ban with the shipped action on host a, which
// also runs the broker and vallum; b and c bridge to it, and c's
// firewall drops members of the sets. Attacker x fails to log in over SSH
// from 10.77.0.x and fd77::x; bystander y never does.
func TestFail2ban(t *testing.T) {
	l, dir := newLab(t)
	a, b, c := addHost(t, l, "a"), addHost(t, l, "b"), addHost(t, l, "c")
	x, y := addHost(t, l, "x"), addHost(t, l, "y")

	// The broker is mosquitto on a: the action's defaults (no parameters)
	// reach it on 127.0.0.1:1883, as they would the embedded broker.
	must[*lab.Proc](t)(a.StartMosquitto(dir, 1883, true))
	must[*lab.Proc](t)(a.StartVallum(dir, vallumBin, "-h", "127.0.0.1", "-t", "blacklist"))
	must[*lab.Proc](t)(b.StartVallum(dir, vallumBin, "-h", a.Addr4, "-t", "blacklist", "-t", "mqttlist"))
	vc := must[*lab.Proc](t)(c.StartVallum(dir, vallumBin, "-h", a.Addr4, "-t", "blacklist"))
	must[string](t)(c.Exec("iptables", "-I", "INPUT", "-m", "set", "--match-set", "blacklist", "src", "-j", "DROP"))
	must[string](t)(c.Exec("ip6tables", "-I", "INPUT", "-m", "set", "--match-set", "blacklist6", "src", "-j", "DROP"))
	reach(t, x, c, true)
	reach(t, y, c, true)

	authLog, quietLog := filepath.Join(dir, "auth.log"), filepath.Join(dir, "quiet.log")
	for _, p := range []string{authLog, quietLog} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f2b := must[*lab.Fail2ban](t)(a.StartFail2ban(dir, lab.Fail2banConfig{
		Actions: map[string][]byte{"vallum": fail2ban.Action(), "vallum-mqtt": fail2ban.MQTTAction()},
		Jails: fmt.Sprintf("[sshd]\nenabled = true\nfilter = sshd\nbackend = polling\nlogpath = %s\n"+
			"maxretry = 3\nfindtime = 10m\nbantime = 600\naction = vallum[vallum_bin=%s]\n"+
			"[mqtt]\nenabled = true\nfilter = sshd\nbackend = polling\nlogpath = %s\nbantime = -1\naction = vallum-mqtt[list=mqttlist]\n",
			authLog, vallumBin, quietLog),
	}))
	all := []*lab.Host{a, b, c}

	t.Run("failures ban everywhere", func(t *testing.T) {
		start := time.Now()
		for _, addr := range []string{x.Addr4, x.Addr6} {
			if err := lab.SSHFailures(authLog, addr, 3); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range all {
			waitPrefixes(t, h, "blacklist", x.Addr4)
			waitPrefixes(t, h, "blacklist6", x.Addr6)
		}
		t.Logf("3 failures from %s and %s to all three kernel sets: %v", x.Addr4, x.Addr6, time.Since(start))
		for _, m := range must[[]lab.Member](t)(b.Members("blacklist")) {
			if m.Timeout < 500 || m.Timeout > 600 {
				t.Errorf("%s on b: timeout %d, want about fail2ban's bantime 600", m.Prefix, m.Timeout)
			}
		}
		reach(t, x, c, false)
		reach(t, y, c, true)
		list := must[string](t)(a.Exec(vallumBin, "list", "blacklist"))
		for _, want := range []string{x.Addr4, x.Addr6, "sshd"} {
			if !strings.Contains(list, want) {
				t.Errorf("vallum list blacklist lacks %s:\n%s", want, list)
			}
		}
	})

	t.Run("unbanip lifts everywhere", func(t *testing.T) {
		must[string](t)(f2b.Client("set", "sshd", "unbanip", x.Addr4, x.Addr6))
		for _, h := range all {
			waitPrefixes(t, h, "blacklist")
			waitPrefixes(t, h, "blacklist6")
		}
		reach(t, x, c, true)
	})

	t.Run("ban while c is down reaches c when it starts", func(t *testing.T) {
		if err := vc.Stop(); err != nil {
			t.Fatalf("vallum on c: %v", err)
		}
		must[string](t)(f2b.Client("set", "sshd", "banip", x.Addr4, x.Addr6))
		for _, h := range []*lab.Host{a, b} {
			waitPrefixes(t, h, "blacklist", x.Addr4)
			waitPrefixes(t, h, "blacklist6", x.Addr6)
		}
		waitPrefixes(t, c, "blacklist")
		must[*lab.Proc](t)(c.StartVallum(dir, vallumBin, "-h", a.Addr4, "-t", "blacklist"))
		waitPrefixes(t, c, "blacklist", x.Addr4)
		waitPrefixes(t, c, "blacklist6", x.Addr6)
		reach(t, x, c, false)
	})

	t.Run("bantime -1 is permanent", func(t *testing.T) {
		const perm = "203.0.113.9" // only set membership: no packet goes there
		must[string](t)(f2b.Client("set", "sshd", "bantime", "-1"))
		must[string](t)(f2b.Client("set", "sshd", "banip", perm))
		waitPrefixes(t, b, "blacklist", perm, x.Addr4)
		for _, m := range must[[]lab.Member](t)(b.Members("blacklist")) {
			if m.Prefix == perm && m.Timeout != 0 {
				t.Errorf("%s on b: timeout %d, want none (permanent)", perm, m.Timeout)
			}
		}
		must[string](t)(f2b.Client("set", "sshd", "unbanip", perm))
		waitPrefixes(t, b, "blacklist", x.Addr4)
	})

	t.Run("mosquitto_pub action", func(t *testing.T) {
		const addr = "198.51.100.7" // only set membership: no packet goes there
		must[string](t)(f2b.Client("set", "mqtt", "banip", addr))
		waitPrefixes(t, b, "mqttlist", addr)
		if ms := must[[]lab.Member](t)(b.Members("mqttlist")); ms[0].Timeout != 0 {
			t.Errorf("%s with bantime -1: timeout %d, want none", addr, ms[0].Timeout)
		}
		must[string](t)(f2b.Client("set", "mqtt", "unbanip", addr))
		waitPrefixes(t, b, "mqttlist")
	})

	t.Run("stopping fail2ban keeps the shared list", func(t *testing.T) {
		must[string](t)(f2b.Client("stop"))
		select {
		case <-f2b.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("fail2ban-server still runs 20 s after stop:\n%s", f2b.Output())
		}
		// fail2ban has exited: any unban it ran is on the broker by now.
		list := must[string](t)(a.Exec(vallumBin, "list", "blacklist"))
		for _, want := range []string{x.Addr4, x.Addr6} {
			if !strings.Contains(list, want) {
				t.Errorf("after fail2ban stopped, vallum list blacklist lacks %s:\n%s", want, list)
			}
		}
		for _, h := range all {
			waitPrefixes(t, h, "blacklist", x.Addr4)
			waitPrefixes(t, h, "blacklist6", x.Addr6)
		}
	})
}

// reach pings to's IPv4 and IPv6 addresses from from, and fails the test
// unless the answers come (want) or do not.
func reach(t *testing.T, from, to *lab.Host, want bool) {
	t.Helper()
	for _, addr := range []string{to.Addr4, to.Addr6} {
		_, err := from.Exec("ping", "-c1", "-W1", addr)
		if got := err == nil; got != want {
			t.Errorf("ping %s from %s: answered %v, want %v", addr, from.Name, got, want)
		}
	}
}
