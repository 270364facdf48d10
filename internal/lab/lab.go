// Package lab builds small networks of hosts for end-to-end tests and the
// benchmark: network namespaces joined by a bridge, with real processes
// (vallum, mosquitto, fail2ban) started inside them and removed afterwards.
// It needs root. Addresses are 10.77.0.0/24 and fd77::/64, which exist only
// inside the namespaces a Lab creates.
package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// Lab is a set of hosts on one switch.
type Lab struct {
	id     string // random, so that parallel runs never meet
	sw     string // the switch namespace, holding bridge br0
	mu     sync.Mutex
	hosts  []*Host
	procs  []*Proc
	closed bool
}

// Host is one network namespace on the lab's switch.
type Host struct {
	lab   *Lab
	Name  string // the short name given to AddHost
	NS    string // the namespace name, for `ip netns exec`
	Addr4 string // 10.77.0.N
	Addr6 string // fd77::N
}

// New creates the switch namespace. Call Close when done.
func New() (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root")
	}
	b := make([]byte, 3)
	rand.Read(b)
	l := &Lab{id: "vl" + hex.EncodeToString(b)}
	l.sw = l.id + "-sw"
	err := run("ip", "netns", "add", l.sw)
	if err == nil {
		err = l.inNS(l.sw, "ip link add br0 type bridge && ip link set br0 up && ip link set lo up")
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// AddHost creates a host with the next addresses, its loopback up and a
// link to the switch.
func (l *Lab) AddHost(name string) (*Host, error) {
	l.mu.Lock()
	n := len(l.hosts) + 1
	h := &Host{lab: l, Name: name, NS: fmt.Sprintf("%s-%s", l.id, name),
		Addr4: fmt.Sprintf("10.77.0.%d", n), Addr6: fmt.Sprintf("fd77::%d", n)}
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	veth, peer := fmt.Sprintf("%sh%d", l.id, n), fmt.Sprintf("%sp%d", l.id, n)
	steps := [][]string{
		{"ip", "netns", "add", h.NS},
		{"ip", "link", "add", veth, "netns", h.NS, "type", "veth", "peer", "name", peer, "netns", l.sw},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	if err := l.inNS(l.sw, fmt.Sprintf("ip link set %s master br0 && ip link set %s up", peer, peer)); err != nil {
		return nil, err
	}
	// nodad: the v6 address is usable at once, not after duplicate detection.
	return h, l.inNS(h.NS, fmt.Sprintf("ip link set lo up && ip link set %s name eth0 && ip addr add %s/24 dev eth0 && "+
		"ip addr add %s/64 dev eth0 nodad && ip link set eth0 up", veth, h.Addr4, h.Addr6))
}

// Close stops every process the lab started and removes its namespaces
// (which removes their sets, rules and links with them).
func (l *Lab) Close() {
	l.mu.Lock()
	procs, hosts := l.procs, l.hosts
	l.closed = true
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Kill()
	}
	for _, h := range hosts {
		run("ip", "netns", "del", h.NS)
	}
	run("ip", "netns", "del", l.sw)
}

// Exec runs a command inside the host and returns its combined output.
func (h *Host) Exec(name string, args ...string) (string, error) {
	out, err := h.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), h.Name, err, clip(string(out)))
	}
	return string(out), nil
}

// Command returns a command that runs inside the host.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

func (l *Lab) inNS(ns, script string) error {
	return run("ip", "netns", "exec", ns, "sh", "-c", script)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, clip(string(out)))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "..."
	}
	return strings.TrimSpace(s)
}
