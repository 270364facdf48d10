//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

// hubUser is one user of the hub's users file, with its password in a
// file for --password-file.
type hubUser struct{ name, role, pwFile string }

// writeUsers writes a users file whose hashes come from
// `vallum broker hash-password`, as an operator makes it, and one 0600
// password file per user. hostExtra is YAML added to every host user. It
// returns the users file and the users by name.
func writeUsers(t *testing.T, dir string, roles map[string]string, hostExtra string) (string, map[string]hubUser) {
	t.Helper()
	var b strings.Builder
	b.WriteString("users:\n")
	users := map[string]hubUser{}
	names := make([]string, 0, len(roles))
	for n := range roles {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		pw := "pw-of-" + name
		cmd := exec.Command(vallumBin, "broker", "hash-password")
		cmd.Stdin = strings.NewReader(pw + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("vallum broker hash-password: %v", err)
		}
		fmt.Fprintf(&b, "  - name: %s\n    password: '%s'\n    role: %s\n", name, strings.TrimSpace(string(out)), roles[name])
		if roles[name] == "host" {
			b.WriteString(hostExtra)
		}
		f := filepath.Join(dir, name+".pw")
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		users[name] = hubUser{name, roles[name], f}
	}
	path := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, users
}

// banFrom runs `vallum ban` (or unban) in h against the hub as user u and
// returns its output and exit error.
func banFrom(t *testing.T, h *lab.Host, hub *lab.Host, dir string, u hubUser, args ...string) (string, error) {
	t.Helper()
	full := append(args, "-h", hub.Addr4, "-u", u.name, "--password-file", u.pwFile,
		"--data-dir", filepath.Join(dir, h.Name+"-cli"))
	cmd := h.Command(vallumBin, full...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("vallum %v in %s did not end within 30 s:\n%s", full, h.Name, out)
	}
	return string(out), err
}

// hubUsers are the users of the three-host tests: one host user per
// machine and a reporter.
var hubUsers = map[string]string{"edge1": "host", "edge2": "host", "reporter": "reporter"}

// TestHubThreeHosts: an embedded-broker hub with users and two edges, each
// in its own namespace. A reporter's ban from an edge lands in all three
// kernel sets; a host user cannot ban; anonymous clients are refused on
// the hub's network listener.
func TestHubThreeHosts(t *testing.T) {
	l, dir := newLab(t)
	hub, e1, e2 := addHost(t, l, "hub"), addHost(t, l, "edge1"), addHost(t, l, "edge2")
	usersFile, u := writeUsers(t, dir, hubUsers, "")

	hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--users", usersFile, "-t", "blacklist"))
	killAtEnd(t, &hv)
	for _, e := range []*lab.Host{e1, e2} {
		must[*lab.Proc](t)(e.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-u", e.Name, "--password-file", u[e.Name].pwFile, "-t", "blacklist"))
	}
	all := []*lab.Host{hub, e1, e2}

	out, err := banFrom(t, e1, hub, dir, u["reporter"], "ban", "blacklist", "203.0.113.50", "--timeout", "1h", "--reason", "e2e")
	if err != nil {
		t.Fatalf("reporter's ban: %v\n%s", err, out)
	}
	for _, h := range all {
		waitPrefixes(t, h, "blacklist", "203.0.113.50")
		checkTimeout(t, "blacklist on "+h.Name, members(t, h, "blacklist"), "203.0.113.50", 3600, 60)
	}

	// A host user may read its lists but not ban.
	out, err = banFrom(t, e2, hub, dir, u["edge2"], "ban", "blacklist", "203.0.113.51")
	t.Logf("ban as host user edge2: err=%v\n%s", err, out)
	// Anonymous clients on the hub's network address: refused at connect.
	anonOut, anonErr := e1.Exec("mosquitto_pub", "-h", hub.Addr4, "-q", "1", "-t", "blacklist/add", "-m", "203.0.113.53")
	if anonErr == nil {
		t.Errorf("anonymous mosquitto_pub to %s:1883 succeeded, want refused:\n%s", hub.Addr4, anonOut)
	} else if !strings.Contains(strings.ToLower(anonOut), "not authori") {
		t.Errorf("anonymous mosquitto_pub: %v, want a 'not authorised' refusal", anonErr)
	}
	// The legacy event a fail2ban action sends, with the reporter's
	// credentials, lands everywhere. It comes after the refused ones on
	// the hub: once it is in every set, they would be too.
	must[string](t)(e2.Exec("mosquitto_pub", "-h", hub.Addr4, "-q", "1", "-u", "reporter", "-P", "pw-of-reporter",
		"-t", "blacklist/add", "-m", "203.0.113.52"))
	for _, h := range all {
		waitPrefixes(t, h, "blacklist", "203.0.113.50", "203.0.113.52")
	}

	// Unban by the reporter reaches every host too.
	out, err = banFrom(t, e2, hub, dir, u["reporter"], "unban", "blacklist", "203.0.113.50")
	if err != nil {
		t.Fatalf("reporter's unban: %v\n%s", err, out)
	}
	for _, h := range all {
		waitPrefixes(t, h, "blacklist", "203.0.113.52")
	}
}

// TestHubLocalBridgeWithUsers is the hub command of the docs,
// `vallum --listen 0.0.0.0:1883 --users users.yaml -t blacklist`: the
// hub's own bridge must work on its embedded broker with users configured,
// without a user of its own; and it must start again on the same data dir
// (its own bridge's session, restored from the store, is its own).
func TestHubLocalBridgeWithUsers(t *testing.T) {
	l, dir := newLab(t)
	hub, e1 := addHost(t, l, "hub"), addHost(t, l, "edge1")
	usersFile, u := writeUsers(t, dir, hubUsers, "")
	hv, err := hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--users", usersFile, "-t", "blacklist")
	if hv != nil {
		killAtEnd(t, &hv)
	}
	if err != nil {
		t.Fatalf("hub with --users and no -u: %v", err)
	}
	out, err := banFrom(t, e1, hub, dir, u["reporter"], "ban", "blacklist", "203.0.113.60")
	if err != nil {
		t.Fatalf("reporter's ban: %v\n%s", err, out)
	}
	waitPrefixes(t, hub, "blacklist", "203.0.113.60")
	if err := hv.Stop(); err != nil {
		t.Fatalf("hub stop: %v\n%s", err, hv.Output())
	}
	if hv, err = hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--users", usersFile, "-t", "blacklist"); err != nil {
		t.Fatalf("hub restarted on its data dir: %v", err)
	}
	if out, err := banFrom(t, e1, hub, dir, u["reporter"], "ban", "blacklist", "203.0.113.61"); err != nil {
		t.Fatalf("reporter's ban after the restart: %v\n%s", err, out)
	}
	waitPrefixes(t, hub, "blacklist", "203.0.113.60", "203.0.113.61")
}

// TestHubHostUserSyncs: an edge logging in to the hub as a plain `host`
// user (no extra filters), the role made for it, subscribes and syncs.
func TestHubHostUserSyncs(t *testing.T) {
	l, dir := newLab(t)
	hub, e1 := addHost(t, l, "hub"), addHost(t, l, "edge1")
	usersFile, u := writeUsers(t, dir, hubUsers, "")
	hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--users", usersFile, "-t", "blacklist"))
	killAtEnd(t, &hv)
	ev := must[*lab.Proc](t)(e1.StartVallumNoWait(dir, vallumBin, "-h", hub.Addr4, "-u", "edge1", "--password-file", u["edge1"].pwFile, "-t", "blacklist"))
	if err := ev.WaitLog("subscribed and synced", 20*time.Second); err != nil {
		t.Fatalf("edge with a host user: %v", err)
	}
	out, err := banFrom(t, e1, hub, dir, u["reporter"], "ban", "blacklist", "203.0.113.61")
	if err != nil {
		t.Fatalf("reporter's ban: %v\n%s", err, out)
	}
	waitPrefixes(t, e1, "blacklist", "203.0.113.61")
}

// TestHubAnonymousNetworkListener: a broker on a network address with no
// users file and no --allow-anonymous would let anyone ban anything; vallum
// refuses to start and says what to do.
func TestHubAnonymousNetworkListener(t *testing.T) {
	l, dir := newLab(t)
	hub := addHost(t, l, "hub")
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:1883", "-t", "blacklist"},
		{"broker", "--listen", "0.0.0.0:1883", "-t", "blacklist"},
		{"--listen", "[::]:1883", "-t", "blacklist"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, err := runVallum(t, hub, dir, args...)
			if err == nil {
				t.Fatalf("exit 0, want non-zero:\n%s", out)
			}
			line := errorLine(out)
			for _, want := range []string{"anonymous", "--users", "--allow-anonymous"} {
				if !strings.Contains(line, want) {
					t.Errorf("error line %q does not mention %q:\n%s", line, want, out)
				}
			}
			if err := hub.WaitPort(1883, 0); err == nil {
				t.Errorf("something still listens on 1883 after the refusal")
			}
		})
	}
}
