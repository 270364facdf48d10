//go:build e2e

package e2e

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vallum/vallum/internal/lab"
)

// The scan sensor (issue 19), with real packets: vallum --sensor on a host
// whose nft rules log SYNs to closed ports; scanners are banned on the
// list through the hub, so on every host.

// scanPorts connects once to each of n closed ports of addr from h, all at
// once as a scanner does, each connect bounded to 2 s (after the ban the
// SYNs are dropped and the connects time out).
func scanPorts(t *testing.T, h *lab.Host, ip string, from, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for p := from; p < from+n; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inNetns(t, h, func() { // a thread of its own in h's namespace: dials on other goroutines would not be
				if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, fmt.Sprint(p)), 2*time.Second); err == nil {
					c.Close()
				}
			})
		}()
	}
	wg.Wait()
}

// inNetns runs f on a thread in h's namespace; sockets made there keep
// it. The thread goes back to its namespace afterwards: a thread left to
// die could be the one that started a lab process, which its Pdeathsig
// would then kill. Safe from any goroutine: failures go to t.Error.
func inNetns(t *testing.T, h *lab.Host, f func()) {
	ns, err := h.NetNS()
	if err != nil {
		t.Error(err)
		return
	}
	defer ns.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		f()
		if err := netns.Set(orig); err != nil {
			done <- err // the thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// sensorHosts starts a hub, a host with the sensor (/metrics on 9101,
// extra flags: the backend) and a third host.
func sensorHosts(t *testing.T, extra ...string) (l *lab.Lab, hub, sens, other *lab.Host, sv *lab.Proc) {
	l, dir := newLab(t)
	hub, sens, other = addHost(t, l, "hub"), addHost(t, l, "sens"), addHost(t, l, "other")
	hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--allow-anonymous", "-t", "blacklist"))
	killAtEnd(t, &hv)
	ov := must[*lab.Proc](t)(other.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-t", "blacklist"))
	killAtEnd(t, &ov)
	args := append([]string{"-h", hub.Addr4, "-t", "blacklist",
		"--sensor", "blacklist", "--sensor-ports", "10", "--metrics", "127.0.0.1:9101"}, extra...)
	sv = must[*lab.Proc](t)(sens.StartVallum(dir, vallumBin, args...))
	killAtEnd(t, &sv)
	if err := sv.WaitLog("port scan sensor reading", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return l, hub, sens, other, sv
}

// waitMetric waits until /metrics on h shows name at want or more.
func waitMetric(t *testing.T, h *lab.Host, name string, want float64) map[string]float64 {
	t.Helper()
	var m map[string]float64
	if err := lab.Eventually(20*time.Second, func() (bool, string) {
		var err error
		if m, err = h.Metrics(9101); err != nil {
			return false, err.Error()
		}
		return m[name] >= want, fmt.Sprintf("%s = %v, want %v", name, m[name], want)
	}); err != nil {
		rules, _ := h.Exec("nft", "list", "chain", "inet", "vallum", "input")
		metrics, _ := h.HTTPGet(9101, "/metrics")
		t.Fatalf("%v\n%s\n%s", err, rules, metrics)
	}
	return m
}

// TestSensorPortScan: connections to an open port and a scan from an
// allowlisted address ban nobody; a scan of 50 closed ports, one connect
// each, bans the scanner on the hub, the sensor's host and a third host,
// once, with reason portscan.
func TestSensorPortScan(t *testing.T) {
	l, hub, sens, other, _ := sensorHosts(t, "--backend", "nft", "--nft-rules", "--allow", "10.77.0.5/32")
	att, friend := addHost(t, l, "att"), addHost(t, l, "friend") // 10.77.0.4, 10.77.0.5
	if friend.Addr4 != "10.77.0.5" {
		t.Fatalf("friend is %s, the --allow above names 10.77.0.5", friend.Addr4)
	}
	ln := must[net.Listener](t)(sens.ListenTCP(sens.Addr4 + ":8080"))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for range 30 { // the open port, 30 connects: nothing logged
		must[net.Conn](t)(att.DialTCP(sens.Addr4 + ":8080")).Close()
	}
	scanPorts(t, friend, sens.Addr4, 2000, 50)
	m := waitMetric(t, sens, "vallum_sensor_packets_total", 50)
	if m["vallum_sensor_packets_total"] != 50 || m["vallum_sensor_bans_total"] != 0 {
		t.Fatalf("after 30 connects to an open port and an allowlisted scan of 50 ports: %v packets read, %v bans; want 50 and 0",
			m["vallum_sensor_packets_total"], m["vallum_sensor_bans_total"])
	}
	scanPorts(t, att, sens.Addr4, 3000, 50)
	waitMetric(t, sens, "vallum_sensor_bans_total", 1)
	for _, h := range []*lab.Host{hub, other} {
		if err := lab.Eventually(10*time.Second, func() (bool, string) {
			p, _ := h.Prefixes("blacklist")
			return len(p) == 1 && p[0] == att.Addr4, fmt.Sprintf("set blacklist on %s = %v", h.Name, p)
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitNft(t, sens, "blacklist", att.Addr4)
	if got := listed(t, hub, "127.0.0.1", 1883); len(got) != 1 || got[att.Addr4] != "portscan" {
		t.Fatalf("the hub's list: %v, want the scanner %s only, with reason portscan", got, att.Addr4)
	}
	scanPorts(t, att, sens.Addr4, 4000, 20) // dropped now: neither logged nor banned again
	m = must[map[string]float64](t)(sens.Metrics(9101))
	if m["vallum_sensor_bans_total"] != 1 {
		t.Errorf("vallum_sensor_bans_total = %v after a second scan by the banned address, want 1", m["vallum_sensor_bans_total"])
	}
	t.Logf("sensor metrics: packets %v, bans %v, overload %v, tracked %v", m["vallum_sensor_packets_total"],
		m["vallum_sensor_bans_total"], m["vallum_sensor_overload_total"], m["vallum_sensor_tracked_sources"])
}

// TestSensorFlood: 200,000 SYNs (at most 10 s of sending) from spoofed
// IPv6 sources, every one a new address, to random closed ports of the
// sensor's host, read with no rate limit below the kernel's: the table of
// tracked sources stays at its bound, the memory of vallum stays bounded
// (logged), and a real scan afterwards is still banned.
func TestSensorFlood(t *testing.T) {
	l, hub, sens, _, sv := sensorHosts(t, "--backend", "nft", "--nft-rules", "--sensor-rate", "1000000")
	att := addHost(t, l, "att")
	rss0 := must[int64](t)(sv.RSS())
	cpu0 := cpuTime(t, sv.Pid())
	sent, took := synFlood(t, att, netip.MustParseAddr(sens.Addr6), 200000, 10*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vallum on sens (exited: %v, %v):\n%s", sv.Exited(), sv.Err(), sv.Output())
		}
	})
	m := waitMetric(t, sens, "vallum_sensor_packets_total", 1)
	var peak int64
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		peak = max(peak, must[int64](t)(sv.RSS())) // the reader drains its socket meanwhile
	}
	m = must[map[string]float64](t)(sens.Metrics(9101))
	t.Logf("flood: %d SYNs sent in %v; sensor read %v, overload %v, tracked %v sources; RSS %d MiB before, %d MiB at most after; CPU %v",
		sent, took.Round(time.Millisecond), m["vallum_sensor_packets_total"], m["vallum_sensor_overload_total"],
		m["vallum_sensor_tracked_sources"], rss0>>20, peak>>20, cpuTime(t, sv.Pid())-cpu0)
	if m["vallum_sensor_tracked_sources"] > 65536 {
		t.Errorf("tracked sources %v, above the table's 65,536", m["vallum_sensor_tracked_sources"])
	}
	if m["vallum_sensor_bans_total"] != 0 {
		t.Errorf("%v bans from a flood of one SYN per source", m["vallum_sensor_bans_total"])
	}
	// 65,536 sources of at most 11 ports: a few MiB; the bound leaves
	// room for the Go runtime's own growth.
	if peak > rss0+64<<20 {
		t.Errorf("RSS grew from %d MiB to %d MiB under the flood", rss0>>20, peak>>20)
	}
	scanPorts(t, att, sens.Addr4, 3000, 50)
	if err := lab.Eventually(20*time.Second, func() (bool, string) {
		p, _ := hub.Prefixes("blacklist")
		return len(p) == 1 && p[0] == att.Addr4, fmt.Sprintf("set blacklist on the hub = %v", p)
	}); err != nil {
		t.Fatalf("a scan after the flood: %v", err)
	}
}

// synFlood sends n TCP SYNs from h to dst, each from a new random address
// of fd77::/64 (the lab's own prefix: on-link, so the sensor's host takes
// them) to a random port, for at most d. It returns how many it sent.
func synFlood(t *testing.T, h *lab.Host, dst netip.Addr, n int, d time.Duration) (int, time.Duration) {
	t.Helper()
	sent := 0
	start := time.Now()
	inNetns(t, h, func() {
		fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		if err != nil {
			t.Error(err)
			return
		}
		defer syscall.Close(fd)
		to := &syscall.SockaddrInet6{Addr: dst.As16()}
		pkt := make([]byte, 60)
		for sent < n && time.Since(start) < d {
			src := netip.MustParseAddr("fd77::").As16()
			binary.BigEndian.PutUint64(src[8:], rand.Uint64())
			synPacket(pkt, src, dst.As16(), uint16(1024+rand.IntN(60000)))
			if err := syscall.Sendto(fd, pkt, 0, to); err != nil {
				if err == syscall.ENOBUFS {
					continue
				}
				t.Error(err)
				return
			}
			sent++
		}
	})
	return sent, time.Since(start)
}

// synPacket writes an IPv6 header and a TCP SYN to port into b (60 bytes).
func synPacket(b []byte, src, dst [16]byte, port uint16) {
	clear(b)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], 20) // payload length
	b[6], b[7] = syscall.IPPROTO_TCP, 64
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	tcp := b[40:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], port)
	binary.BigEndian.PutUint32(tcp[4:], rand.Uint32())
	tcp[12], tcp[13] = 5<<4, 0x02 // data offset 5 words, SYN
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	// Checksum over the pseudo-header and the segment.
	var sum uint32
	add := func(p []byte) {
		for i := 0; i+1 < len(p); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(p[i:]))
		}
	}
	add(src[:])
	add(dst[:])
	sum += 20 + syscall.IPPROTO_TCP
	add(tcp)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(tcp[16:], ^uint16(sum))
}

// cpuTime is the user and system CPU time of process pid.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b := must[[]byte](t)(os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)))
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// TestSensorIptables: the ipset backend and the iptables rules the README
// gives, after the accept of an open port: connections to that port are
// not logged, a scan of the others bans the scanner on every host; a
// scan of closed UDP ports (the UDP rule) bans another.
func TestSensorIptables(t *testing.T) {
	l, hub, sens, other, _ := sensorHosts(t)
	att, udpAtt := addHost(t, l, "att"), addHost(t, l, "udpatt")
	for _, r := range [][]string{
		{"-A", "INPUT", "-m", "set", "--match-set", "blacklist", "src", "-j", "DROP"},
		{"-A", "INPUT", "-i", "lo", "-j", "ACCEPT"}, // the /metrics scrapes
		{"-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT"},
		{"-A", "INPUT", "-p", "tcp", "--syn", "-m", "conntrack", "--ctstate", "NEW", "-m", "limit", "--limit", "1000/second",
			"--limit-burst", "1000", "-j", "NFLOG", "--nflog-group", "27"},
		{"-A", "INPUT", "-p", "udp", "-m", "pkttype", "--pkt-type", "unicast", "-m", "conntrack", "--ctstate", "NEW",
			"-m", "limit", "--limit", "1000/second", "--limit-burst", "1000", "-j", "NFLOG", "--nflog-group", "27"},
	} {
		must[string](t)(sens.Exec("iptables", r...))
	}
	ln := must[net.Listener](t)(sens.ListenTCP(sens.Addr4 + ":8080"))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for range 30 {
		must[net.Conn](t)(att.DialTCP(sens.Addr4 + ":8080")).Close()
	}
	scanPorts(t, att, sens.Addr4, 3000, 5) // five closed ports: logged, no scan yet
	m := waitMetric(t, sens, "vallum_sensor_packets_total", 5)
	if m["vallum_sensor_packets_total"] != 5 || m["vallum_sensor_bans_total"] != 0 {
		t.Fatalf("after 30 connects to the open port and 5 to closed ones: %v read, %v bans; want 5 and 0",
			m["vallum_sensor_packets_total"], m["vallum_sensor_bans_total"])
	}
	scanPorts(t, att, sens.Addr4, 3005, 45)
	for _, h := range []*lab.Host{hub, sens, other} {
		if err := lab.Eventually(10*time.Second, func() (bool, string) {
			p, _ := h.Prefixes("blacklist")
			return len(p) == 1 && p[0] == att.Addr4, fmt.Sprintf("set blacklist on %s = %v", h.Name, p)
		}); err != nil {
			t.Fatal(err)
		}
	}
	sendUDP(t, udpAtt, sens.Addr4, 4000, 50)
	want := []string{att.Addr4, udpAtt.Addr4}
	slices.Sort(want)
	for _, h := range []*lab.Host{hub, sens, other} {
		if err := lab.Eventually(10*time.Second, func() (bool, string) {
			p, _ := h.Prefixes("blacklist")
			return slices.Equal(p, want), fmt.Sprintf("set blacklist on %s = %v after a UDP scan, want %v", h.Name, p, want)
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSensorReportQuorum: with --sensor-report on two sensor hosts and
// quorum 2 on the hub's keeper, a scan seen by one sensor bans the
// scanner on that host alone at once (its report pending at the keeper,
// no other host banning); the same scanner scanning the second sensor
// makes the quorum, and the scanner is banned on every host.
func TestSensorReportQuorum(t *testing.T) {
	l, dir := newLab(t)
	usersFile, u := writeUsers(t, dir, map[string]string{"sens1": "host", "sens2": "host", "other": "host"}, "")
	hub := addHost(t, l, "hub")
	hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--users", usersFile,
		"-t", "blacklist", "--policy", "blacklist:quorum=2,window=1h"))
	killAtEnd(t, &hv)
	var sensors []*lab.Host
	for _, n := range []string{"sens1", "sens2"} {
		h := addHost(t, l, n)
		p := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-u", n, "--password-file", u[n].pwFile,
			"-t", "blacklist", "--backend", "nft", "--nft-rules", "--sensor", "blacklist", "--sensor-report", "--metrics", "127.0.0.1:9101"))
		killAtEnd(t, &p)
		if err := p.WaitLog("port scan sensor reading", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		sensors = append(sensors, h)
	}
	s1, s2 := sensors[0], sensors[1]
	other := addHost(t, l, "other")
	ov := must[*lab.Proc](t)(other.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-u", "other", "--password-file", u["other"].pwFile, "-t", "blacklist"))
	killAtEnd(t, &ov)
	att := addHost(t, l, "att")

	scanPorts(t, att, s1.Addr4, 3000, 50)
	waitMetric(t, s1, "vallum_sensor_bans_total", 1)
	waitNft(t, s1, "blacklist", att.Addr4) // at once, where it was seen
	waitPending(t, other, hub, dir, u["other"], att.Addr4, "1/2", "sens1 at ")
	// The keeper has decided on the report (it is pending): no other host bans.
	absent(t, "blacklist", att.Addr4, hub, other)
	if p := must[[]string](t)(s2.NftPrefixes("inet", "vallum", "blacklist")); len(p) != 0 {
		t.Fatalf("sens2 bans %v after a scan seen by sens1 alone", p)
	}

	scanPorts(t, att, s2.Addr4, 3000, 50)
	for _, h := range []*lab.Host{hub, other} {
		if err := lab.Eventually(20*time.Second, func() (bool, string) {
			p, _ := h.Prefixes("blacklist")
			return len(p) == 1 && p[0] == att.Addr4, fmt.Sprintf("set blacklist on %s = %v", h.Name, p)
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitNft(t, s1, "blacklist", att.Addr4)
	waitNft(t, s2, "blacklist", att.Addr4)
	if list := listOn(t, other, hub, dir, u["other"]); !strings.Contains(list, "quorum: sens1 sens2") {
		t.Errorf("vallum list does not name the two sensors:\n%s", list)
	}
}

// TestSensorIPv6Rotating: a scanner that sends every SYN from a new
// address of its /64 (fd78:1::/64, routed to the attacker's host) is one
// source: its /64 is banned on every host, and then a host of that /64
// that could connect to the sensor's open port before can no longer.
func TestSensorIPv6Rotating(t *testing.T) {
	l, hub, sens, other, _ := sensorHosts(t, "--backend", "nft", "--nft-rules")
	att := addHost(t, l, "att")
	const scanNet, peer = "fd78:1::/64", "fd78:1::beef"
	must[string](t)(att.Exec("ip", "-6", "addr", "add", peer+"/64", "dev", "eth0", "nodad"))
	must[string](t)(sens.Exec("ip", "-6", "route", "add", scanNet, "via", att.Addr6))
	ln := must[net.Listener](t)(sens.ListenTCP("[" + sens.Addr6 + "]:8080"))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dialFrom := func() error {
		var err error
		inNetns(t, att, func() {
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(peer)}}
			var c net.Conn
			if c, err = d.Dial("tcp", "["+sens.Addr6+"]:8080"); err == nil {
				c.Close()
			}
		})
		return err
	}
	if err := dialFrom(); err != nil {
		t.Fatalf("from %s to the open port before the scan: %v", peer, err)
	}
	ports := make([]uint16, 50)
	for i := range ports {
		ports[i] = uint16(3000 + i)
	}
	rotatingScan(t, att, netip.MustParseAddr(sens.Addr6), netip.MustParsePrefix(scanNet), ports)
	waitMetric(t, sens, "vallum_sensor_bans_total", 1)
	for _, h := range []*lab.Host{hub, other} {
		if err := lab.Eventually(10*time.Second, func() (bool, string) {
			p, _ := h.Prefixes("blacklist6")
			return len(p) == 1 && p[0] == scanNet, fmt.Sprintf("set blacklist6 on %s = %v", h.Name, p)
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitNft(t, sens, "blacklist6_net", scanNet) // prefixes are in the interval set beside the set of addresses
	if err := dialFrom(); err == nil {
		t.Fatalf("from %s, an address of the banned /64 that never scanned, the open port still answers", peer)
	}
	m := must[map[string]float64](t)(sens.Metrics(9101))
	if m["vallum_sensor_tracked_sources"] != 1 {
		t.Errorf("tracked sources %v after a scan from 50 addresses of one /64, want 1", m["vallum_sensor_tracked_sources"])
	}
}

// rotatingScan sends one TCP SYN from h to each port of dst, each from a
// new random address of the /64 pfx (raw packets: the source is spoofed).
func rotatingScan(t *testing.T, h *lab.Host, dst netip.Addr, pfx netip.Prefix, ports []uint16) {
	t.Helper()
	inNetns(t, h, func() {
		fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		if err != nil {
			t.Error(err)
			return
		}
		defer syscall.Close(fd)
		pkt := make([]byte, 60)
		for _, port := range ports {
			src := pfx.Addr().As16()
			binary.BigEndian.PutUint64(src[8:], rand.Uint64())
			synPacket(pkt, src, dst.As16(), port)
			if err := syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet6{Addr: dst.As16()}); err != nil {
				t.Error(err)
				return
			}
		}
	})
}

// TestSensorUDPScan: datagrams to a bound UDP port are not logged, from
// however many flows; a scan of 50 closed UDP ports, one datagram each,
// bans the scanner on every host.
func TestSensorUDPScan(t *testing.T) {
	l, hub, sens, other, _ := sensorHosts(t, "--backend", "nft", "--nft-rules")
	att := addHost(t, l, "att")
	pc := must[net.PacketConn](t)(sens.ListenUDP(sens.Addr4 + ":9999"))
	t.Cleanup(func() { pc.Close() })
	for range 30 {
		sendUDP(t, att, sens.Addr4, 9999, 1) // the bound port, 30 flows: nothing logged
	}
	sendUDP(t, att, sens.Addr4, 3000, 5) // five closed ports: logged, no scan yet
	m := waitMetric(t, sens, "vallum_sensor_packets_total", 5)
	if m["vallum_sensor_packets_total"] != 5 || m["vallum_sensor_bans_total"] != 0 {
		t.Fatalf("after 30 datagrams to a bound port and 5 to closed ones: %v read, %v bans; want 5 and 0",
			m["vallum_sensor_packets_total"], m["vallum_sensor_bans_total"])
	}
	sendUDP(t, att, sens.Addr4, 3005, 45)
	for _, h := range []*lab.Host{hub, other} {
		if err := lab.Eventually(10*time.Second, func() (bool, string) {
			p, _ := h.Prefixes("blacklist")
			return len(p) == 1 && p[0] == att.Addr4, fmt.Sprintf("set blacklist on %s = %v", h.Name, p)
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitNft(t, sens, "blacklist", att.Addr4)
}

// sendUDP sends one datagram from h to each of n ports of ip from port
// from on, each from a socket of its own (a new flow).
func sendUDP(t *testing.T, h *lab.Host, ip string, from, n int) {
	inNetns(t, h, func() {
		for p := from; p < from+n; p++ {
			c, err := net.Dial("udp", net.JoinHostPort(ip, fmt.Sprint(p)))
			if err != nil {
				t.Error(err)
				return
			}
			c.Write([]byte("probe"))
			c.Close()
		}
	})
}
