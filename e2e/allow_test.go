//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// Issue 16, the shared allowlist: `vallum allow add` by an admin on one
// host lifts the bans it covers from every host's kernel set and from the
// broker, and no later ban it covers reaches any; no other login can
// change it by any path; a late joiner knows it before any ban.

// fleet is a hub with logins admin, edge1 (a host), fail2ban (a reporter)
// and keeper: vallum's embedded broker with a users file, or mosquitto
// with contrib/mosquitto/vallum.acl and `vallum keeper`.
type fleet struct {
	b      *hub
	keeper *lab.Proc // the hub itself, or `vallum keeper`
	dir    string
	pw     map[string]string // login -> password file
	users  string            // the embedded hub's users file
}

// startFleet starts the hub; on mosquitto, with the ACL that aclOf makes
// of contrib/mosquitto/vallum.acl (nil: as it is).
func startFleet(t *testing.T, l *lab.Lab, dir string, embedded bool, aclOf func(string) string) *fleet {
	t.Helper()
	f := &fleet{b: &hub{embedded: embedded, h: addHost(t, l, "hub"), dir: dir}, dir: dir, pw: map[string]string{}}
	if embedded {
		users, u := writeUsers(t, dir, map[string]string{"admin": "admin", "edge1": "host", "fail2ban": "reporter"}, "")
		for name, hu := range u {
			f.pw[name] = hu.pwFile
		}
		f.users = users
		f.startHub(t)
		return f
	}
	pwFile := filepath.Join(dir, "mosquitto.passwd")
	for i, u := range []string{"admin", "edge1", "fail2ban", "keeper"} {
		pw := "pw-of-" + u
		args := []string{"-b", pwFile, u, pw}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		must[string](t)(f.b.h.Exec("mosquitto_passwd", args...))
		f.pw[u] = filepath.Join(dir, u+".pw")
		if err := os.WriteFile(f.pw[u], []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	acl := must[string](t)(filepath.Abs(filepath.Join("..", "contrib", "mosquitto", "vallum.acl")))
	if aclOf != nil {
		b := must[[]byte](t)(os.ReadFile(acl))
		acl = filepath.Join(dir, "vallum.acl")
		if err := os.WriteFile(acl, []byte(aclOf(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "mosquitto-acl.conf")
	body := fmt.Sprintf("user root\nmax_queued_messages 200000\nlog_dest stdout\n"+
		"persistence true\npersistence_location %s/\nautosave_interval 1\n"+
		"listener %d\nallow_anonymous false\npassword_file %s\nacl_file %s\n", dir, hubPort, pwFile, acl)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f.b.proc = must[*lab.Proc](t)(f.b.h.Start(dir, "mosquitto", "-c", conf))
	if err := f.b.h.WaitPort(hubPort, 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, f.b.proc.Output())
	}
	f.keeper = startKeeper(t, addHost(t, l, "keeper"), f.b, dir, "k1", f.as("keeper")...)
	return f
}

// startHub starts the embedded hub on its data dir.
func (f *fleet) startHub(t *testing.T) {
	t.Helper()
	f.b.proc = must[*lab.Proc](t)(f.b.h.Start(f.dir, vallumBin, "broker", "--listen", fmt.Sprintf("0.0.0.0:%d", hubPort),
		"--users", f.users, "-t", root, "--data-dir", filepath.Join(f.dir, "hub-store")))
	if err := f.b.h.WaitPort(hubPort, 20*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, f.b.proc.Output())
	}
	f.keeper = f.b.proc
}

func (f *fleet) as(u string) []string { return []string{"-u", u, "--password-file", f.pw[u]} }

// cli runs a vallum command in h as login u.
func (f *fleet) cli(h *lab.Host, u string, args ...string) (string, error) {
	args = append(args, "-h", f.b.h.Addr4, "--data-dir", filepath.Join(f.dir, h.Name+"-cli"))
	return h.Exec(vallumBin, append(args, f.as(u)...)...)
}

// host starts a bridge on a new host as edge1, with metrics on 9101.
func (f *fleet) host(t *testing.T, l *lab.Lab, name string) (*lab.Host, *lab.Proc) {
	t.Helper()
	h := addHost(t, l, name)
	p := startBridge(t, h, f.b, f.dir, append(f.as("edge1"), "--metrics", "127.0.0.1:9101")...)
	killAtEnd(t, &p)
	return h, p
}

// brokerHolds waits until `vallum list` (as a host) shows exactly want.
func (f *fleet) brokerHolds(t *testing.T, h *lab.Host, want ...string) {
	t.Helper()
	var out string
	err := lab.Eventually(20*time.Second, func() (bool, string) {
		var err error
		if out, err = f.cli(h, "edge1", "list", root); err != nil {
			return false, err.Error()
		}
		for _, w := range want {
			if !strings.Contains(out, "\n"+w+" ") {
				return false, ""
			}
		}
		return strings.Contains(out, fmt.Sprintf("\n%d active bans", len(want))), ""
	})
	if err != nil {
		t.Fatalf("vallum list: %v, want %v:\n%s", err, want, out)
	}
}

// TestAllowFleet: an allow entry added by an admin on one host lifts a
// ban from every kernel set and from the broker, logged on every host;
// later bans it covers (vallum ban, a legacy event) reach no host, nor the
// broker; a host that joins later gets the bans it does not cover only;
// a deleted entry protects nothing any more.
func TestAllowFleet(t *testing.T) {
	for _, embedded := range []bool{true, false} {
		name := map[bool]string{true: "embedded", false: "mosquitto"}[embedded]
		t.Run(name, func(t *testing.T) {
			l, dir := newLab(t)
			f := startFleet(t, l, dir, embedded, nil)
			h1, p1 := f.host(t, l, "h1")
			h2, p2 := f.host(t, l, "h2")
			for _, a := range []string{"198.51.100.7", "203.0.113.1"} {
				if out, err := f.cli(h1, "fail2ban", "ban", root, a); err != nil {
					t.Fatalf("vallum ban %s: %v\n%s", a, err, out)
				}
			}
			for _, h := range []*lab.Host{h1, h2} {
				waitSet(t, h, 20*time.Second, []string{"198.51.100.7", "203.0.113.1"})
			}

			if out, err := f.cli(h1, "admin", "allow", "add", "198.51.100.0/24", "--comment", "office"); err != nil {
				t.Fatalf("vallum allow add: %v\n%s", err, out)
			}
			for _, h := range []*lab.Host{h1, h2} {
				waitSet(t, h, 20*time.Second, []string{"203.0.113.1"})
			}
			// Logged by the keeper, which deletes the ban's state, or by
			// a host that had the entry first (whichever is first lifts it).
			lifted := "prefix=198.51.100.7/32 allow=198.51.100.0/24 comment=office"
			if err := lab.Eventually(5*time.Second, func() (bool, string) {
				return strings.Contains(f.keeper.Output()+p1.Output()+p2.Output(), lifted), ""
			}); err != nil {
				t.Errorf("nobody logged the ban lifted (%q): %v\nkeeper:\n%s", lifted, err, f.keeper.Output())
			}
			f.brokerHolds(t, h1, "203.0.113.1")
			out := must[string](t)(f.cli(h2, "edge1", "allow", "list"))
			if !strings.Contains(out, "198.51.100.0/24  office") || !strings.Contains(out, "1 entries") {
				t.Errorf("vallum allow list as a host:\n%s", out)
			}

			// Later bans it covers, as fail2ban sends them.
			must[string](t)(f.cli(h1, "fail2ban", "ban", root, "198.51.100.8"))
			pw := strings.TrimSpace(must[string](t)(h1.Exec("cat", f.pw["fail2ban"])))
			must[string](t)(h1.Exec("mosquitto_pub", "-h", f.b.h.Addr4, "-q", "1", "-u", "fail2ban", "-P", pw,
				"-t", root+"/add", "-m", "198.51.100.9"))
			must[string](t)(f.cli(h1, "fail2ban", "ban", root, "203.0.113.2")) // a fence
			for _, h := range []*lab.Host{h1, h2} {
				waitSet(t, h, 20*time.Second, []string{"203.0.113.1", "203.0.113.2"})
			}
			f.brokerHolds(t, h1, "203.0.113.1", "203.0.113.2")

			h3, _ := f.host(t, l, "h3")
			waitSet(t, h3, 20*time.Second, []string{"203.0.113.1", "203.0.113.2"})
			m := must[map[string]float64](t)(h3.Metrics(9101))
			if n := m[`vallum_adds_total{set="blacklist"}`]; n != 2 {
				t.Errorf("the late joiner added %v entries to its set, want 2 (none covered by the allowlist)", n)
			}

			must[string](t)(f.cli(h2, "admin", "allow", "del", "198.51.100.0/24"))
			must[string](t)(f.cli(h1, "fail2ban", "ban", root, "198.51.100.8"))
			for _, h := range []*lab.Host{h1, h2, h3} {
				waitSet(t, h, 20*time.Second, []string{"198.51.100.8", "203.0.113.1", "203.0.113.2"})
			}
		})
	}
}

// TestAllowForgery: neither a host login nor a reporter can add or delete
// an allow entry: not by `vallum allow` (which says so), nor by a publish
// of its own, retained or not, at QoS 0, 1 or 2, nor by a will. Had one
// gone through, it would have lifted the ban the hosts hold.
func TestAllowForgery(t *testing.T) {
	for _, embedded := range []bool{true, false} {
		name := map[bool]string{true: "embedded", false: "mosquitto"}[embedded]
		t.Run(name, func(t *testing.T) {
			l, dir := newLab(t)
			f := startFleet(t, l, dir, embedded, nil)
			h1, p1 := f.host(t, l, "h1")
			must[string](t)(f.cli(h1, "admin", "allow", "add", "192.0.2.0/24", "--comment", "partner"))
			must[string](t)(f.cli(h1, "fail2ban", "ban", root, "198.51.100.7"))
			waitSet(t, h1, 20*time.Second, []string{"198.51.100.7"})

			for _, u := range []string{"edge1", "fail2ban"} {
				for _, args := range [][]string{{"add", "198.51.100.7"}, {"del", "192.0.2.0/24"}} {
					out, err := f.cli(h1, u, append([]string{"allow"}, args...)...)
					if err == nil || !strings.Contains(out, "admin") {
						t.Errorf("vallum allow %s as %s: %v, want an error that says only admins may:\n%s", args[0], u, err, out)
					}
				}
				pw := strings.TrimSpace(must[string](t)(h1.Exec("cat", f.pw[u])))
				entry := string(wire.EncodeAllow(wire.Allow{At: time.Now(), Comment: "forged"}))
				for _, qos := range []string{"0", "1", "2"} {
					for _, retain := range []string{"-r", "-d"} { // -d: debug output, i.e. not retained
						base := []string{"-h", f.b.h.Addr4, "-q", qos, "-u", u, "-P", pw, retain}
						// Refused: an error, or a silent drop.
						h1.Exec("mosquitto_pub", append(base, "-t", "vallum/allow/198.51.100.7", "-m", entry)...)
						h1.Exec("mosquitto_pub", append(base, "-t", "vallum/allow/192.0.2.0/24", "-n")...)
					}
				}
				// A will, published by the broker when the connection is
				// lost without a DISCONNECT (the process killed).
				will := must[*lab.Proc](t)(h1.Start(dir, "mosquitto_sub", "-h", f.b.h.Addr4, "-u", u, "-P", pw, "-t", root+"/ban/#",
					"--will-topic", "vallum/allow/198.51.100.7", "--will-payload", entry, "--will-retain", "--will-qos", "1"))
				time.Sleep(500 * time.Millisecond) // let it connect (or be refused): there is nothing to wait for
				will.Kill()
			}
			// The fence: an admin's entry made after the forgeries. Once
			// the host has it, the host has had every forgery the broker
			// let through.
			must[string](t)(f.cli(h1, "admin", "allow", "add", "203.0.113.0/24", "--comment", "fence"))
			if err := p1.WaitLog("prefix=203.0.113.0/24 comment=fence", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			out := must[string](t)(f.cli(h1, "admin", "allow", "list"))
			if !strings.Contains(out, "192.0.2.0/24    partner") && !strings.Contains(out, "192.0.2.0/24  partner") ||
				!strings.Contains(out, "fence") || !strings.Contains(out, "2 entries") {
				t.Errorf("the allowlist after the forgeries, want partner and fence only:\n%s", out)
			}
			if got := must[[]string](t)(h1.Prefixes(root)); len(got) != 1 || got[0] != "198.51.100.7" {
				t.Errorf("the host's set after the forgeries: %v, want the ban kept", got)
			}
			if strings.Contains(p1.Output(), "forged") || strings.Contains(p1.Output(), "entry deleted") {
				t.Errorf("a forgery reached the host:\n%s", p1.Output())
			}
		})
	}
}

// TestAllowLateJoiner: a broker (mosquitto, no keeper) holds 200 bans an
// allow entry published after them covers, as the state of a list without
// a keeper does. Hosts that join later, one after another, never add one
// of them to their kernel set, not even for a moment: each adds exactly
// the one ban not covered, and refuses the 200.
func TestAllowLateJoiner(t *testing.T) {
	l, dir := newLab(t)
	b := &hub{h: addHost(t, l, "hub"), dir: dir}
	b.start(t, true)
	pub := b.publisher(t)
	var msgs []lab.Retained
	now := time.Now()
	for i := range 200 {
		a := fmt.Sprintf("198.51.100.%d", i)
		msgs = append(msgs, lab.Retained{Topic: root + "/ban/" + a, Payload: wire.EncodeState(wire.State{At: now, Origin: "e2e"})})
	}
	msgs = append(msgs, lab.Retained{Topic: root + "/ban/203.0.113.1", Payload: wire.EncodeState(wire.State{At: now, Origin: "e2e"})})
	pub.PublishAll(msgs)
	pub.Publish("vallum/allow/198.51.100.0/24", true, wire.EncodeAllow(wire.Allow{At: time.Now(), Comment: "office"}))
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		h := addHost(t, l, fmt.Sprintf("late%d", i))
		p := startBridge(t, h, b, dir, "--metrics", "127.0.0.1:9101")
		waitSet(t, h, 20*time.Second, []string{"203.0.113.1"})
		m := must[map[string]float64](t)(h.Metrics(9101))
		if n := m[`vallum_adds_total{set="blacklist"}`]; n != 1 {
			t.Errorf("late joiner %d added %v entries to its set, want 1: a ban the allowlist covers was applied", i, n)
		}
		if n := m[`vallum_refused_total{reason="allowlisted"}`]; n != 200 {
			t.Errorf("late joiner %d refused %v bans as allowlisted, want 200", i, n)
		}
		stopBridge(t, p)
	}
}

// An ACL that predates the shared allowlist: mosquitto grants a
// subscription its ACL denies, and sends nothing on it. The keeper and
// the hosts go on keeping and applying the lists, without the allowlist;
// `vallum allow list` with a host's login shows what the host gets.
func TestAllowOldACL(t *testing.T) {
	l, dir := newLab(t)
	f := startFleet(t, l, dir, false, func(acl string) string {
		return strings.ReplaceAll(acl, "topic read vallum/allow/#\n", "")
	})
	h1, _ := f.host(t, l, "h1")
	must[string](t)(f.cli(h1, "admin", "allow", "add", "198.51.100.0/24"))
	must[string](t)(f.cli(h1, "fail2ban", "ban", root, "203.0.113.1"))
	waitSet(t, h1, 20*time.Second, []string{"203.0.113.1"})
	f.brokerHolds(t, h1, "203.0.113.1")
	if out := must[string](t)(f.cli(h1, "edge1", "allow", "list")); !strings.Contains(out, "0 entries") {
		t.Errorf("vallum allow list as the host, whose login may not read it:\n%s", out)
	}
	if out := must[string](t)(f.cli(h1, "admin", "allow", "list")); !strings.Contains(out, "1 entries") {
		t.Errorf("vallum allow list as the admin:\n%s", out)
	}
}

// The allowlist lives in the hub's store as the list does: after the hub
// restarts, it is still there, and a host that joins then still refuses
// the bans it covers.
func TestAllowSurvivesHubRestart(t *testing.T) {
	l, dir := newLab(t)
	f := startFleet(t, l, dir, true, nil)
	h1, _ := f.host(t, l, "h1")
	must[string](t)(f.cli(h1, "admin", "allow", "add", "198.51.100.0/24", "--comment", "office"))
	f.b.stop(t)
	f.startHub(t)
	out := must[string](t)(f.cli(h1, "edge1", "allow", "list"))
	if !strings.Contains(out, "198.51.100.0/24  office") || !strings.Contains(out, "1 entries") {
		t.Fatalf("vallum allow list after the hub restarted:\n%s", out)
	}
	h2, _ := f.host(t, l, "h2")
	must[string](t)(f.cli(h1, "fail2ban", "ban", root, "198.51.100.7"))
	must[string](t)(f.cli(h1, "fail2ban", "ban", root, "203.0.113.1")) // a fence
	for _, h := range []*lab.Host{h1, h2} {
		waitSet(t, h, 30*time.Second, []string{"203.0.113.1"})
	}
}
