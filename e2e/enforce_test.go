//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	vnl "github.com/vishvananda/netlink"

	"github.com/vallum/vallum/internal/lab"
)

// --kill-connections (issue 19), with real packets: an attacker holds TCP
// connections on which servers keep sending; a ban published on the hub
// must stop them within a second on the hosts that ask for it, and leave
// no conntrack entry of the attacker; a host that does not ask keeps the
// connection, its firewall accepting ESTABLISHED before the set's drop.

// flow is one TCP connection from the attacker to a server that sends
// 1 KiB every 10 ms (bounded: 60 s) while the attacker reads and counts.
type flow struct {
	got  atomic.Int64
	done chan struct{} // closed when the attacker's read fails
	err  error         // that failure, set before done closes
}

// startFlow accepts one connection on l, dialled by dial, and starts both
// ends; it returns once data flows.
func startFlow(t *testing.T, l net.Listener, dial func() (net.Conn, error)) *flow {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	cc, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	go serve(sc)
	f := &flow{done: make(chan struct{})}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := cc.Read(buf)
			f.got.Add(int64(n))
			if err != nil {
				f.err = err
				close(f.done)
				return
			}
		}
	}()
	if err := lab.Eventually(10*time.Second, func() (bool, string) {
		return f.got.Load() > 10<<10, "no data flows from the server"
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

// serve writes to c until a write fails or 60 s have passed. A write that
// blocks (the peer's acknowledgements dropped) gives up after a second and
// tries again.
func serve(c net.Conn) {
	chunk := make([]byte, 1024)
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(chunk); err != nil && !isTimeout(err) {
			return
		}
	}
}

// until waits until t (an observation window, not a synchronisation).
func until(t time.Time) { <-time.After(time.Until(t)) }

// window returns what each flow received between 1 s and 3 s after the
// ban.
func window(banned time.Time, fs ...*flow) []int64 {
	until(banned.Add(time.Second))
	d := make([]int64, len(fs))
	for i, f := range fs {
		d[i] = -f.got.Load()
	}
	until(banned.Add(3 * time.Second))
	for i, f := range fs {
		d[i] += f.got.Load()
	}
	return d
}

// conntrackOf counts the conntrack entries of addr (as original or reply
// source) in the host's namespace.
func conntrackOf(t *testing.T, ns string, addr string) int {
	t.Helper()
	h, err := netnsHandle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	n := 0
	for _, fam := range []vnl.InetFamily{vnl.FAMILY_V4, vnl.FAMILY_V6} {
		flows, err := h.ConntrackTableList(vnl.ConntrackTable, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range flows {
			if f.Forward.SrcIP.String() == addr || f.Reverse.SrcIP.String() == addr {
				n++
			}
		}
	}
	return n
}

func netnsHandle(ns string) (*vnl.Handle, error) {
	h := &lab.Host{NS: ns}
	fd, err := h.NetNS()
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	return vnl.NewHandleAt(fd)
}

func banOn(t *testing.T, hub *lab.Host, addr string) time.Time {
	t.Helper()
	must[string](t)(hub.Exec(vallumBin, "-h", "127.0.0.1", "ban", "blacklist", addr, "--timeout", "1h"))
	return time.Now()
}

// TestKillConnectionsLocal: two servers whose firewall accepts ESTABLISHED
// before dropping the set (iptables, ipset backend), one with
// --kill-connections. A ban on the hub: the first server's connections
// (IPv4 and IPv6) are reset within a second and its conntrack table
// forgets the attacker; the other's connection keeps carrying data
// although the attacker is in its set.
func TestKillConnectionsLocal(t *testing.T) {
	l, dir := newLab(t)
	hub, kill, keep, att := addHost(t, l, "hub"), addHost(t, l, "kill"), addHost(t, l, "keep"), addHost(t, l, "att")
	hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--allow-anonymous", "-t", "blacklist"))
	killAtEnd(t, &hv)
	kv := must[*lab.Proc](t)(kill.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-t", "blacklist", "--kill-connections", "blacklist"))
	killAtEnd(t, &kv)
	nv := must[*lab.Proc](t)(keep.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-t", "blacklist"))
	killAtEnd(t, &nv)
	flows := map[string]*flow{}
	for _, h := range []*lab.Host{kill, keep} {
		for _, r := range [][]string{
			{"-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			{"-A", "INPUT", "-m", "set", "--match-set", "blacklist", "src", "-j", "DROP"},
		} {
			must[string](t)(h.Exec("iptables", r...))
		}
		ln := must[net.Listener](t)(h.ListenTCP(h.Addr4 + ":9000"))
		t.Cleanup(func() { ln.Close() })
		flows[h.Name] = startFlow(t, ln, func() (net.Conn, error) { return att.DialTCP(h.Addr4 + ":9000") })
	}
	for _, r := range [][]string{
		{"-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		{"-A", "INPUT", "-m", "set", "--match-set", "blacklist6", "src", "-j", "DROP"},
	} {
		must[string](t)(kill.Exec("ip6tables", r...))
	}
	addr6 := net.JoinHostPort(kill.Addr6, "9001")
	ln6 := must[net.Listener](t)(kill.ListenTCP(addr6))
	t.Cleanup(func() { ln6.Close() })
	flows["kill6"] = startFlow(t, ln6, func() (net.Conn, error) { return att.DialTCP(addr6) })
	for _, a := range []string{att.Addr4, att.Addr6} {
		if n := conntrackOf(t, kill.NS, a); n == 0 {
			t.Fatalf("no conntrack entry of %s before the ban: the check below would prove nothing", a)
		}
	}
	banned6 := banOn(t, hub, att.Addr6)
	select {
	case <-flows["kill6"].done:
	case <-time.After(time.Until(banned6.Add(time.Second))):
		t.Errorf("the attacker's IPv6 connection to the host with --kill-connections still open 1 s after the ban")
	}
	banned := banOn(t, hub, att.Addr4)
	for _, h := range []*lab.Host{kill, keep} {
		if err := lab.Eventually(5*time.Second, func() (bool, string) {
			p, _ := h.Prefixes("blacklist")
			return len(p) == 1 && p[0] == att.Addr4, fmt.Sprintf("set blacklist on %s = %v", h.Name, p)
		}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-flows["kill"].done:
		t.Logf("attacker's connection to kill ended %v after the ban: %v", time.Since(banned).Round(time.Millisecond), flows["kill"].err)
	case <-time.After(time.Until(banned.Add(time.Second))):
		t.Errorf("the attacker's connection to the host with --kill-connections still open 1 s after the ban")
	}
	d := window(banned, flows["kill"], flows["keep"])
	if d[0] != 0 {
		t.Errorf("the attacker still received %d bytes from kill between 1 s and 3 s after the ban", d[0])
	}
	if d[1] == 0 {
		t.Errorf("without --kill-connections the established connection stopped too: the contrast shows nothing")
	}
	t.Logf("between 1 s and 3 s after the ban, the attacker received %d bytes from kill, %d from keep", d[0], d[1])
	for _, a := range []string{att.Addr4, att.Addr6} {
		if n := conntrackOf(t, kill.NS, a); n != 0 {
			t.Errorf("%d conntrack entries of %s on kill 3 s after the ban, want none", n, a)
		}
	}
	if err := kv.WaitLog("cut connections of banned addresses", 5*time.Second); err != nil {
		t.Error(err)
	}
}

// TestKillConnectionsRouted: a router with --kill-connections whose own
// firewall accepts ESTABLISHED, and a server behind it. With the nft
// backend and --nft-rules (vallum's chains run before fw4's, priority -10)
// and with ipset and the iptables rules the README gives (the set's drops,
// from and to, inserted before the ESTABLISHED accept): the attacker's
// routed connection stops carrying data within a second of the ban, and
// 3 s later (the server retransmitting to the attacker meanwhile) the
// router's conntrack table holds no entry of the attacker.
func TestKillConnectionsRouted(t *testing.T) {
	nftFirewall := [][]string{{"nft", "add table inet filt; " +
		"add chain inet filt fw { type filter hook forward priority 0; }; add rule inet filt fw ct state established,related accept"}}
	iptables := func(cmd, set string) [][]string {
		return [][]string{
			{cmd, "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			{cmd, "-I", "FORWARD", "1", "-m", "set", "--match-set", set, "src", "-j", "DROP"},
			{cmd, "-I", "FORWARD", "2", "-m", "set", "--match-set", set, "dst", "-j", "DROP"},
		}
	}
	for _, tc := range []struct {
		name     string
		args     []string
		firewall [][]string
		v6       bool
	}{
		{"nft", []string{"--backend", "nft", "--nft-rules"}, nftFirewall, false},
		{"iptables", nil, iptables("iptables", "blacklist"), false},
		{"nft-ipv6", []string{"--backend", "nft", "--nft-rules"}, nftFirewall, true},
		{"ip6tables", nil, iptables("ip6tables", "blacklist6"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, dir := newLab(t)
			hub, rtr, att := addHost(t, l, "hub"), addHost(t, l, "rtr"), addHost(t, l, "att")
			lan := addLAN(t, rtr, att)
			hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--allow-anonymous", "-t", "blacklist"))
			killAtEnd(t, &hv)
			args := append([]string{"-h", hub.Addr4, "-t", "blacklist", "--kill-connections", "blacklist"}, tc.args...)
			rv := must[*lab.Proc](t)(rtr.StartVallum(dir, vallumBin, args...))
			killAtEnd(t, &rv)
			for _, c := range tc.firewall {
				must[string](t)(rtr.Exec(c[0], c[1:]...))
			}
			server, attacker := "10.78.0.2:9000", att.Addr4
			if tc.v6 {
				server, attacker = "[fd78::2]:9000", att.Addr6
			}
			ln := must[net.Listener](t)(lan.ListenTCP(server))
			t.Cleanup(func() { ln.Close() })
			f := startFlow(t, ln, func() (net.Conn, error) { return att.DialTCP(server) })
			if n := conntrackOf(t, rtr.NS, attacker); n == 0 {
				t.Fatal("no conntrack entry of the attacker on the router before the ban")
			}
			banned := banOn(t, hub, attacker)
			if d := window(banned, f); d[0] != 0 {
				t.Errorf("the attacker still received %d bytes through the router between 1 s and 3 s after the ban", d[0])
			}
			if n := conntrackOf(t, rtr.NS, attacker); n != 0 {
				t.Errorf("%d conntrack entries of the attacker on the router 3 s after the ban, want none", n)
			}
			if err := rv.WaitLog("cut connections of banned addresses", time.Second); err != nil {
				t.Error(err)
			}
		})
	}
}

// addLAN makes a namespace behind rtr (10.78.0.2 and fd78::2, rtr
// 10.78.0.1 and fd78::1, forwarding both families) and routes att to it
// through rtr. It is removed when the test ends.
func addLAN(t *testing.T, rtr, att *lab.Host) *lab.Host {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	lan := &lab.Host{Name: "lan", NS: "vlan-" + id}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	run("ip", "netns", "add", lan.NS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", lan.NS).Run() })
	run("ip", "link", "add", "vl"+id, "netns", rtr.NS, "type", "veth", "peer", "name", "eth0", "netns", lan.NS)
	must[string](t)(lan.Exec("sh", "-c", "ip link set lo up && ip link set eth0 up && ip addr add 10.78.0.2/24 dev eth0 && ip route add default via 10.78.0.1 && "+
		"ip addr add fd78::2/64 dev eth0 nodad && ip -6 route add default via fd78::1"))
	must[string](t)(rtr.Exec("sh", "-c", "ip link set vl"+id+" up && ip addr add 10.78.0.1/24 dev vl"+id+" && sysctl -qw net.ipv4.ip_forward=1 && "+
		"ip addr add fd78::1/64 dev vl"+id+" nodad && sysctl -qw net.ipv6.conf.all.forwarding=1"))
	must[string](t)(att.Exec("ip", "route", "add", "10.78.0.0/24", "via", rtr.Addr4))
	must[string](t)(att.Exec("ip", "-6", "route", "add", "fd78::/64", "via", rtr.Addr6))
	return lan
}

// TestDropCounters: the packets a banned address sends raise
// vallum_dropped_packets_total of its list and family by at least as many,
// read from /metrics, on a host with --nft-rules and on one whose rules are
// contrib/firewall/vallum.nft; a host that is not banned raises nothing.
func TestDropCounters(t *testing.T) {
	l, dir := newLab(t)
	hub, att, ok := addHost(t, l, "hub"), addHost(t, l, "att"), addHost(t, l, "ok")
	rules, file := addHost(t, l, "rules"), addHost(t, l, "file")
	hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--allow-anonymous", "-t", "blacklist"))
	killAtEnd(t, &hv)
	must[string](t)(file.Exec("nft", "-f", "../contrib/firewall/vallum.nft"))
	for h, extra := range map[*lab.Host]string{rules: "--nft-rules", file: "--no-create"} {
		v := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-t", "blacklist", "--backend", "nft", extra, "--metrics", "127.0.0.1:9101"))
		killAtEnd(t, &v)
	}
	banOn(t, hub, att.Addr4)
	const v4, v6 = `vallum_dropped_packets_total{list="blacklist",family="ipv4"}`, `vallum_dropped_packets_total{list="blacklist",family="ipv6"}`
	for _, h := range []*lab.Host{rules, file} {
		waitNft(t, h, "blacklist", att.Addr4)
		before := must[map[string]float64](t)(h.Metrics(9101))
		if _, found := before[v4]; !found {
			t.Fatalf("%s: /metrics has no %s", h.Name, v4)
		}
		const n = 20
		att.Exec("ping", "-c", fmt.Sprint(n), "-i", "0.02", "-W", "1", h.Addr4) // every one dropped: it fails
		must[string](t)(ok.Exec("ping", "-c", "5", "-i", "0.02", h.Addr4))
		after := must[map[string]float64](t)(h.Metrics(9101))
		if d := after[v4] - before[v4]; d < n || d >= n+5 {
			t.Errorf("%s: %s rose by %v after %d pings of the banned address and 5 of another, want at least %d and not those 5", h.Name, v4, d, n, n)
		}
		if after[v6] != before[v6] {
			t.Errorf("%s: %s rose from %v to %v with no IPv6 packet banned", h.Name, v6, before[v6], after[v6])
		}
	}
}
