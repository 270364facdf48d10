//go:build linux

package nft

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/netnstest"
	"github.com/vallum/vallum/internal/wire"
)

// lab is attacker --- router --- server in three named namespaces.
type lab struct {
	t             *testing.T
	att, rtr, srv string
}

func newLab(t *testing.T) *lab {
	netnstest.RequireRoot(t)
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (iproute2, iputils-ping)", tool)
		}
	}
	sfx := make([]byte, 4)
	rand.Read(sfx)
	id := hex.EncodeToString(sfx)
	l := &lab{t: t, att: "vatt-" + id, rtr: "vrtr-" + id, srv: "vsrv-" + id}
	for _, ns := range []string{l.att, l.rtr, l.srv} {
		l.run("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		l.in(ns, "ip", "link", "set", "lo", "up")
	}
	l.link(l.att, "a0", "10.77.1.2/24", "2001:db8:1::2/64", l.rtr, "r0", "10.77.1.1/24", "2001:db8:1::1/64")
	l.link(l.srv, "s0", "10.77.2.2/24", "2001:db8:2::2/64", l.rtr, "r1", "10.77.2.1/24", "2001:db8:2::1/64")
	l.in(l.att, "ip", "addr", "add", "10.77.1.3/24", "dev", "a0")
	l.in(l.att, "ip", "-6", "addr", "add", "2001:db8:1::3/64", "dev", "a0", "nodad")
	l.in(l.rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	for _, r := range [][]string{{l.att, "10.77.1.1", "2001:db8:1::1"}, {l.srv, "10.77.2.1", "2001:db8:2::1"}} {
		l.in(r[0], "ip", "route", "add", "default", "via", r[1])
		l.in(r[0], "ip", "-6", "route", "add", "default", "via", r[2])
	}
	return l
}

// link joins ns1 and ns2 with a veth pair and addresses both ends.
func (l *lab) link(ns1, if1, a4, a6, ns2, if2, b4, b6 string) {
	l.run("ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer", if2, "netns", ns2)
	for _, e := range [][]string{{ns1, if1, a4, a6}, {ns2, if2, b4, b6}} {
		l.in(e[0], "ip", "addr", "add", e[2], "dev", e[1])
		l.in(e[0], "ip", "-6", "addr", "add", e[3], "dev", e[1], "nodad")
		l.in(e[0], "ip", "link", "set", e[1], "up")
	}
}

func (l *lab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

func (l *lab) in(ns string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// ping reports whether one echo from src to dst in the attacker's namespace is answered.
func (l *lab) ping(src, dst string) bool {
	return exec.Command("ip", "netns", "exec", l.att, "ping", "-c1", "-W1", "-I", src, dst).Run() == nil
}

// reachable waits (up to 5 s, for neighbour discovery) until the ping works.
func (l *lab) reachable(src, dst string) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if l.ping(src, dst) {
			return true
		}
	}
	return false
}

func TestBannedSourceIsDropped(t *testing.T) {
	l := newLab(t)
	fd, err := os.Open("/run/netns/" + l.rtr)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	b, err := New(Options{NetNS: int(fd.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	specs := []bridge.SetSpec{{Name: "blacklist", Family: bridge.IPv4, Create: true}, {Name: "blacklist6", Family: bridge.IPv6, Create: true}}
	for _, s := range specs {
		if _, err := b.Ensure(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.EnsureRules(ctx, specs); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ set, bad, good, router, server string }{
		{"blacklist", "10.77.1.2", "10.77.1.3", "10.77.1.1", "10.77.2.2"},
		{"blacklist6", "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::1", "2001:db8:2::2"},
	} {
		t.Run(c.set, func(t *testing.T) {
			for _, dst := range []string{c.router, c.server} {
				if !l.reachable(c.bad, dst) {
					t.Fatalf("before the ban, ping %s -> %s fails", c.bad, dst)
				}
			}
			op := bridge.Op{Action: bridge.Add, Prefix: mustPrefix(c.bad), Timeout: 600}
			if err := b.Apply(ctx, c.set, []bridge.Op{op}); err != nil {
				t.Fatal(err)
			}
			for _, dst := range []string{c.router, c.server} {
				if l.ping(c.bad, dst) {
					t.Errorf("banned %s still reaches %s", c.bad, dst)
				}
				if !l.reachable(c.good, dst) {
					t.Errorf("not banned %s cannot reach %s", c.good, dst)
				}
			}
			op.Action, op.Timeout = bridge.Del, wire.DefaultTimeout
			if err := b.Apply(ctx, c.set, []bridge.Op{op}); err != nil {
				t.Fatal(err)
			}
			for _, dst := range []string{c.router, c.server} {
				if !l.reachable(c.bad, dst) {
					t.Errorf("after the unban, %s still cannot reach %s", c.bad, dst)
				}
			}
		})
	}
}
