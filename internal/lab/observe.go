package lab

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
)

// HTTPGet fetches path from the host's 127.0.0.1:port, dialled from inside
// the host's namespace, and returns the body; a status other than 200 is
// an error.
func (h *Host) HTTPGet(port int, path string) (string, error) {
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
	resp, err := h.HTTPClient().Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("GET %s in %s: %s", url, h.Name, resp.Status)
	}
	return string(b), nil
}

// Metrics scrapes the Prometheus text at 127.0.0.1:port/metrics in the
// host: series (name with labels, as printed) to value.
func (h *Host) Metrics(port int) (map[string]float64, error) {
	body, err := h.HTTPGet(port, "/metrics")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// ListenUDP opens a UDP socket inside the host on addr (e.g.
// "10.77.0.1:53"), for tests that must see whether anything sends there.
func (h *Host) ListenUDP(addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.inside(func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	return pc, err
}

// SetResolver makes processes started in the host afterwards resolve names
// through nameserver ip only (`ip netns exec` binds
// /etc/netns/NS/resolv.conf over /etc/resolv.conf). The returned func
// removes the file.
func (h *Host) SetResolver(ip string) (func(), error) {
	dir := filepath.Join("/etc/netns", h.NS)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return func() {}, err
	}
	undo := func() { os.RemoveAll(dir) }
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+ip+"\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		undo()
		return func() {}, err
	}
	return undo, nil
}

// inside runs fn on a thread switched into the host's namespace; sockets
// made there stay in it. As in dialIn, a thread that cannot switch back
// stays locked and dies with its goroutine.
func (h *Host) inside(fn func() error) error {
	target, err := netns.GetFromName(h.NS)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", h.NS, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("cannot return to the original namespace: %w", err) // thread stays locked
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}
