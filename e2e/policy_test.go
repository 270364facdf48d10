//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/fail2ban"
	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// policyHub starts an embedded-broker hub with users (hosts edge1..edgeN,
// each bridging with its own login, and reporter) and the keeper policy
// given, /metrics on 9101, and a bridge on every edge. It returns the
// hub, its process, the edges and the users.
func policyHub(t *testing.T, l *lab.Lab, dir string, edges int, policy string) (*lab.Host, *lab.Proc, []*lab.Host, map[string]hubUser) {
	t.Helper()
	roles := map[string]string{"reporter": "reporter"}
	for i := 1; i <= edges; i++ {
		roles[fmt.Sprintf("edge%d", i)] = "host"
	}
	usersFile, u := writeUsers(t, dir, roles, "")
	hub := addHost(t, l, "hub")
	hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--users", usersFile,
		"-t", "blacklist", "--policy", policy, "--metrics", "127.0.0.1:9101"))
	killAtEnd(t, &hv)
	var hs []*lab.Host
	for i := 1; i <= edges; i++ {
		e := addHost(t, l, fmt.Sprintf("edge%d", i))
		must[*lab.Proc](t)(e.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-u", e.Name, "--password-file", u[e.Name].pwFile, "-t", "blacklist"))
		hs = append(hs, e)
	}
	return hub, hv, hs, u
}

// waitTimeout waits until prefix is in h's set with a remaining timeout in
// (max-slack, max]: the kernel's own countdown, as a user reads it.
func waitTimeout(t *testing.T, h *lab.Host, set, prefix string, max, slack int) {
	t.Helper()
	var got lab.Member
	err := lab.Eventually(20*time.Second, func() (bool, string) {
		m, err := h.Members(set)
		if err != nil {
			return false, err.Error()
		}
		for _, x := range m {
			if x.Prefix == prefix {
				got = x
				return x.Timeout <= max && x.Timeout > max-slack, fmt.Sprintf("%s on %s: timeout %d, want in (%d, %d]", prefix, h.Name, x.Timeout, max-slack, max)
			}
		}
		return false, fmt.Sprintf("%s not in %s on %s", prefix, set, h.Name)
	})
	if err != nil {
		t.Fatalf("%v (last %+v)", err, got)
	}
}

// absent fails if any of hs holds prefix in set now.
func absent(t *testing.T, set, prefix string, hs ...*lab.Host) {
	t.Helper()
	for _, h := range hs {
		if slices.Contains(must[[]string](t)(h.Prefixes(set)), prefix) {
			t.Errorf("%s holds %s in %s, want it absent", h.Name, prefix, set)
		}
	}
}

// listOn runs `vallum list` against the hub as u, with extra arguments.
func listOn(t *testing.T, h, hub *lab.Host, dir string, u hubUser, extra ...string) string {
	t.Helper()
	out, err := banFrom(t, h, hub, dir, u, append([]string{"list", "blacklist"}, extra...)...)
	if err != nil {
		t.Fatalf("vallum list %v: %v\n%s", extra, err, out)
	}
	return out
}

// waitPending waits until `vallum list --pending` shows prefix with want
// (such as "1/2  edge1").
func waitPending(t *testing.T, h, hub *lab.Host, dir string, u hubUser, prefix string, want ...string) string {
	t.Helper()
	var out string
	err := lab.Eventually(20*time.Second, func() (bool, string) {
		out = listOn(t, h, hub, dir, u, "--pending")
		for _, line := range strings.Split(out, "\n") {
			ok := strings.HasPrefix(line, prefix+" ")
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no pending line for %s with %q in:\n%s", prefix, want, out)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPolicyEscalation: with escalation on, an address banned three
// times in a row (`vallum ban --timeout 60`, as fail2ban's action sends a
// short ticket) is banned for 15 min, then 30, then 3 h, on every host:
// in each kernel set's timeout. `vallum list` shows the count. (That the
// history survives a restart: the keeper's unit tests. A hub with a users
// file does not restart on its data dir today: its own bridge's session
// belongs to the previous run's local login, client_id_taken.)
func TestPolicyEscalation(t *testing.T) {
	l, dir := newLab(t)
	hub, _, edges, u := policyHub(t, l, dir, 2, "blacklist:escalate=on")
	all := append([]*lab.Host{hub}, edges...)
	const addr = "203.0.113.60"
	for i, want := range []int{900, 1800, 3 * 3600} {
		out, err := banFrom(t, edges[0], hub, dir, u["reporter"], "ban", "blacklist", addr, "--timeout", "60", "--reason", "sshd")
		if err != nil {
			t.Fatalf("ban %d: %v\n%s", i+1, err, out)
		}
		for _, h := range all {
			waitTimeout(t, h, "blacklist", addr, want, 60)
		}
		t.Logf("ban %d: %d s on every host", i+1, want)
	}
	list := listOn(t, edges[1], hub, dir, u["edge2"])
	line := ""
	for _, s := range strings.Split(list, "\n") {
		if strings.HasPrefix(s, addr+" ") {
			line = s
		}
	}
	if f := strings.Fields(line); len(f) == 0 || f[len(f)-1] != "3" || !strings.Contains(line, "sshd") {
		t.Errorf("vallum list: the line of %s does not end in its count 3 with reason sshd:\n%s", addr, list)
	}
	// A legacy event (vallumd's fail2ban action) is escalated too: the
	// keeper's state comes first on the hub, and the bridges skip the
	// event's shorter time after it.
	must[string](t)(edges[1].Exec("mosquitto_pub", "-h", hub.Addr4, "-q", "1", "-u", "reporter", "-P", "pw-of-reporter",
		"-t", "blacklist/add", "-m", "203.0.113.62 timeout 60"))
	for _, h := range all {
		waitTimeout(t, h, "blacklist", "203.0.113.62", 900, 60)
	}
	// The reporter's time is the floor: a long ticket keeps its time.
	out, err := banFrom(t, edges[0], hub, dir, u["reporter"], "ban", "blacklist", "203.0.113.61", "--timeout", "2h")
	if err != nil {
		t.Fatalf("ban: %v\n%s", err, out)
	}
	for _, h := range all {
		waitTimeout(t, h, "blacklist", "203.0.113.61", 7200, 60)
	}
}

// TestPolicyQuorum: with quorum 2, edge1's report bans the address on
// edge1 alone at once (`vallum ban --report`, its own bridge's set), and
// the report is pending with its origin; a report forged by edge3 in
// edge2's name is refused and counts for nothing; edge2's own report
// makes the ban on every host.
func TestPolicyQuorum(t *testing.T) {
	l, dir := newLab(t)
	hub, hv, edges, u := policyHub(t, l, dir, 3, "blacklist:quorum=2,window=1h")
	e1, e2, e3 := edges[0], edges[1], edges[2]
	const addr = "203.0.113.70"
	report := func(h *lab.Host, user string) {
		t.Helper()
		out, err := banFrom(t, h, hub, dir, u[user], "ban", "blacklist", addr, "--timeout", "600", "--report")
		if err != nil {
			t.Fatalf("report from %s: %v\n%s", user, err, out)
		}
	}
	report(e1, "edge1")
	waitTimeout(t, e1, "blacklist", addr, 600, 60) // at once, on the host that saw it
	waitPending(t, e2, hub, dir, u["edge2"], addr, "1/2", "edge1 at ")
	// The keeper has decided on the report (it is pending): no other host bans.
	absent(t, "blacklist", addr, hub, e2, e3)

	// edge3 reports as edge2: the hub refuses the topic, nothing counts.
	forged := wire.ReportTopic("edge2", "blacklist")
	out, err := e3.Exec("mosquitto_pub", "-h", hub.Addr4, "-q", "1", "-u", "edge3", "-P", "pw-of-edge3", "-t", forged, "-m", addr+" timeout 600")
	t.Logf("forged report: %v %s", err, out)
	wantHubRefused(t, hub, hv, "acl_publish", "user=edge3", "topic="+forged)
	waitPending(t, e2, hub, dir, u["edge2"], addr, "1/2")
	absent(t, "blacklist", addr, hub, e2, e3)

	report(e2, "edge2")
	for _, h := range []*lab.Host{hub, e1, e2, e3} {
		waitTimeout(t, h, "blacklist", addr, 600, 60)
	}
	list := listOn(t, e3, hub, dir, u["edge3"])
	if !strings.Contains(list, "quorum: edge1 edge2") {
		t.Errorf("vallum list does not name the reporters:\n%s", list)
	}
	pending := listOn(t, e3, hub, dir, u["edge3"], "--pending")
	if strings.Contains(pending, addr) {
		t.Errorf("the reports are still pending after the ban:\n%s", pending)
	}
}

// TestPolicyReporterLimit: edge1 may report 3 addresses an hour; of 5
// reports the first 3 are banned everywhere, the other 2 are held: not on
// any host, an ERROR line naming the reporter, and the metric.
func TestPolicyReporterLimit(t *testing.T) {
	l, dir := newLab(t)
	hub, hv, edges, _ := policyHub(t, l, dir, 2, "blacklist:limit=3/1h")
	payload := "203.0.113.81\n203.0.113.82\n203.0.113.83\n203.0.113.84\n203.0.113.85"
	must[string](t)(edges[0].Exec("mosquitto_pub", "-h", hub.Addr4, "-q", "1", "-u", "edge1", "-P", "pw-of-edge1",
		"-t", wire.ReportTopic("edge1", "blacklist"), "-m", payload))
	for _, h := range []*lab.Host{hub, edges[0], edges[1]} {
		waitPrefixes(t, h, "blacklist", "203.0.113.81", "203.0.113.82", "203.0.113.83")
	}
	waitCounter(t, hub, `vallum_keeper_reports_held_total{list="blacklist",reporter="edge1"}`, 2)
	if err := hv.WaitLog("reporter over its limit", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, line := range strings.Split(hv.Output(), "\n") {
		if strings.Contains(line, "reporter over its limit") {
			lines = append(lines, line)
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "reporter=edge1") {
				t.Errorf("held report logged as %q, want ERROR naming reporter edge1", line)
			}
		}
	}
	if len(lines) != 2 {
		t.Errorf("%d log lines of held reports, want 2:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	// Another reporter is not held by edge1's limit.
	must[string](t)(edges[1].Exec("mosquitto_pub", "-h", hub.Addr4, "-q", "1", "-u", "edge2", "-P", "pw-of-edge2",
		"-t", wire.ReportTopic("edge2", "blacklist"), "-m", "203.0.113.86"))
	for _, h := range []*lab.Host{hub, edges[0], edges[1]} {
		waitPrefixes(t, h, "blacklist", "203.0.113.81", "203.0.113.82", "203.0.113.83", "203.0.113.86")
	}
}

// TestPolicyReportIdentityMosquitto: on mosquitto with
// contrib/mosquitto/vallum.acl and `vallum keeper`, a login cannot report
// in another's name: edge2 reports an address as itself and as edge1,
// and with quorum 2 nothing is banned; edge1's own report bans it.
func TestPolicyReportIdentityMosquitto(t *testing.T) {
	l, dir := newLab(t)
	b := &hub{h: addHost(t, l, aclHubName), dir: dir}
	pwFile := filepath.Join(dir, "mosquitto.passwd")
	users := map[string]string{}
	for i, u := range []string{"keeper", "edge1", "edge2"} {
		pw := fmt.Sprintf("pw-%d-%s", i, u)
		args := []string{"-b", pwFile, u, pw}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		must[string](t)(b.h.Exec("mosquitto_passwd", args...))
		users[u] = pw
		if err := os.WriteFile(filepath.Join(dir, u+".pw"), []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	acl := must[string](t)(filepath.Abs(filepath.Join("..", "contrib", "mosquitto", "vallum.acl")))
	conf := filepath.Join(dir, "mosquitto-acl.conf")
	body := fmt.Sprintf("user root\nper_listener_settings true\nlog_dest stdout\n"+
		"listener %d\nallow_anonymous false\npassword_file %s\nacl_file %s\n"+
		"listener %d 127.0.0.1\nallow_anonymous true\n", hubPort, pwFile, acl, aclObserverPort)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	b.proc = must[*lab.Proc](t)(b.h.Start(dir, "mosquitto", "-c", conf))
	for _, port := range []int{hubPort, aclObserverPort} {
		if err := b.h.WaitPort(port, 10*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, b.proc.Output())
		}
	}
	as := func(u string) []string { return []string{"-u", u, "--password-file", filepath.Join(dir, u+".pw")} }
	k := startKeeper(t, addHost(t, l, "k1"), b, dir, "k1", append(as("keeper"), "--policy", root+":quorum=2")...)
	e1, e2 := addHost(t, l, "edge1"), addHost(t, l, "edge2")
	startBridge(t, e1, b, dir, as("edge1")...)
	startBridge(t, e2, b, dir, as("edge2")...)

	const addr = "203.0.113.90"
	pubAs := func(h *lab.Host, login, as string) {
		t.Helper()
		out, err := h.Exec("mosquitto_pub", "-h", b.h.Addr4, "-q", "1", "-u", login, "-P", users[login],
			"-t", wire.ReportTopic(as, root), "-m", addr+" timeout 600")
		t.Logf("report by %s as %s: %v %s", login, as, err, out)
	}
	pubAs(e2, "edge2", "edge1") // forged: mosquitto drops it without a word
	pubAs(e2, "edge2", "edge2")
	pending := wire.PendingTopic(root, netip.MustParsePrefix(addr+"/32"))
	var got map[string]string
	err := lab.Eventually(20*time.Second, func() (bool, string) {
		got, _ = b.h.RetainedState(aclObserverPort, pending, time.Second)
		return len(got) == 1, fmt.Sprintf("pending on the broker: %v", got)
	})
	if err != nil {
		t.Fatalf("%v\nkeeper:\n%s", err, lastLines(k.Output(), 30))
	}
	p := must[wire.Pending](t)(wire.DecodePending([]byte(got[pending])))
	if len(p.Reports) != 1 || p.Reports[0].By != "edge2" {
		t.Fatalf("pending reports %+v, want edge2's alone", p)
	}
	absent(t, root, addr, e1, e2)
	pubAs(e1, "edge1", "edge1")
	// edge1 is the host of vallum.acl's example (edge2 may report, under
	// the acl's pattern, but has no read rule there).
	waitTimeout(t, e1, root, addr, 600, 60)
}

// TestPolicyFail2banQuorum: real fail2ban on three hosts, each with a
// jail that bans everywhere at 3 failures (action vallum) and one that
// reports at 2 (action vallum-report, report only). An attacker fails
// twice on each host: below every banning jail's maxretry, so no host's
// fail2ban bans it; the three reports make the keeper's quorum of 3, and
// the address is banned on every host, a fourth that saw nothing too.
func TestPolicyFail2banQuorum(t *testing.T) {
	l, dir := newLab(t)
	roles := map[string]string{}
	names := []string{"a", "b", "c", "d"}
	for _, n := range names {
		roles[n] = "host"
		roles["f2b-"+n] = "reporter"
	}
	usersFile, u := writeUsers(t, dir, roles, "")
	hub := addHost(t, l, "hub")
	hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--users", usersFile,
		"-t", "blacklist", "--policy", "blacklist:quorum=3,window=10m"))
	killAtEnd(t, &hv)
	x := addHost(t, l, "x")
	var hosts []*lab.Host
	var f2bs []*lab.Fail2ban
	for _, n := range names {
		h := addHost(t, l, n)
		must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-u", n, "--password-file", u[n].pwFile, "-t", "blacklist"))
		hosts = append(hosts, h)
		if n == "d" {
			continue // d runs no fail2ban: it sees no failure
		}
		authLog := filepath.Join(dir, n+"-auth.log")
		if err := os.WriteFile(authLog, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		params := fmt.Sprintf("list=blacklist, host=%s, user=f2b-%s, password_file=%s, vallum_bin=%s", hub.Addr4, n, u["f2b-"+n].pwFile, vallumBin)
		jail := "enabled = true\nfilter = sshd\nbackend = polling\nlogpath = " + authLog + "\nfindtime = 10m\nbantime = 600\n"
		f2bs = append(f2bs, must[*lab.Fail2ban](t)(h.StartFail2ban(dir, lab.Fail2banConfig{
			Actions: map[string][]byte{"vallum": fail2ban.Action(), "vallum-report": fail2ban.ReportAction()},
			Jails: "[sshd]\n" + jail + "maxretry = 3\naction = vallum[" + params + "]\n" +
				"[sshd-report]\n" + jail + "maxretry = 2\naction = vallum-report[" + params + ", local=false]\n",
		})))
		if err := lab.SSHFailures(authLog, x.Addr4, 2); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range append([]*lab.Host{hub}, hosts...) {
		waitTimeout(t, h, "blacklist", x.Addr4, 600, 60)
	}
	list := listOn(t, hosts[3], hub, dir, u["d"])
	if !strings.Contains(list, "quorum: f2b-a f2b-b f2b-c") {
		t.Errorf("vallum list does not show the quorum's reporters:\n%s", list)
	}
	for i, f := range f2bs {
		st := must[string](t)(f.Client("status", "sshd"))
		if !strings.Contains(st, "Currently banned:\t0") && !strings.Contains(st, "Currently banned: 0") {
			t.Errorf("host %s's banning jail banned (it saw 2 failures of maxretry 3):\n%s", names[i], st)
		}
	}
}
