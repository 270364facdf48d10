package lab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// HTTPClient returns an HTTP client whose connections are dialled from
// inside the host's namespace, so that 127.0.0.1 means the host's loopback
// (where a daemon serves its metrics).
func (h *Host) HTTPClient() *http.Client {
	tr := &http.Transport{
		DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
			return h.dialIn(addr)
		},
		DisableKeepAlives: true, // a kept connection would outlive a restarted server
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// NetNS opens a handle on the host's namespace, for backends that work in
// a namespace by fd (ipset.Options.NetNS, nft.Options.NetNS). The caller
// closes it.
func (h *Host) NetNS() (netns.NsHandle, error) {
	ns, err := netns.GetFromName(h.NS)
	if err != nil {
		return ns, fmt.Errorf("namespace %s: %w", h.NS, err)
	}
	return ns, nil
}

// Pid is the process id (`ip netns exec` execs the command, so it is the
// process itself).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// RSS returns the resident memory of the process in bytes (VmRSS).
func (p *Proc) RSS() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS of %s: %w", p.Name, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no VmRSS for %s (pid %d)", p.Name, p.Pid())
}
