package lab

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// BuildVallum builds the vallum binary into dir and returns its path. The
// module root is found from the working directory (go test runs in the
// package's folder, go run in the caller's).
func BuildVallum(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", fmt.Errorf("lab: cannot find the module root: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "vallum")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/vallum")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/vallum: %w: %s", err, out)
	}
	return bin, nil
}

// MosquittoConf is a mosquitto configuration fit for tests: anonymous on
// every address, room for bursts of QoS 1 (2.0 drops past 1000 queued), and
// persistence in dir when persist is set. It stays root (`user root`): the
// test's folders are root's own, and as user mosquitto it could neither
// save its database there nor read a 0600 password file, and would only
// log it.
func MosquittoConf(dir string, port int, persist bool) string {
	c := fmt.Sprintf("user root\nlistener %d\nallow_anonymous true\nmax_queued_messages 2000000\nmax_inflight_messages 1000\n"+
		"set_tcp_nodelay true\nlog_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n", port)
	if persist {
		c += fmt.Sprintf("persistence true\npersistence_location %s/\nautosave_interval 1\n", dir)
	}
	return c
}

// StartMosquitto runs mosquitto in the host on port and waits until it
// accepts connections. persist keeps retained messages and sessions across
// a restart (saved on SIGTERM).
func (h *Host) StartMosquitto(dir string, port int, persist bool) (*Proc, error) {
	return h.StartMosquittoWith(dir, port, persist, "")
}

// WaitPort polls until something in the host accepts TCP on port.
func (h *Host) WaitPort(port int, timeout time.Duration) error {
	return Eventually(timeout, func() (bool, string) {
		out, _ := h.Command("ss", "-Hltn", "sport = :"+strconv.Itoa(port)).Output()
		return strings.Contains(string(out), "LISTEN"), fmt.Sprintf("nothing listens on port %d in %s", port, h.Name)
	})
}

// Dial returns a connection from the test process into the host's
// namespace: a TCP connection to the host's loopback at port.
func (h *Host) Dial(port int) (net.Conn, error) {
	return h.dialIn("127.0.0.1:" + strconv.Itoa(port))
}

// StartVallum runs vallum in the host with args, its data directory in
// dir/<host>-data (kept across restarts, so the client id is stable), and
// waits until it has subscribed and synced with the broker.
func (h *Host) StartVallum(dir, bin string, args ...string) (*Proc, error) {
	p, err := h.StartVallumNoWait(dir, bin, args...)
	if err != nil {
		return nil, err
	}
	return p, p.WaitLog("subscribed and synced", 60*time.Second)
}

// StartVallumNoWait is StartVallum without waiting.
func (h *Host) StartVallumNoWait(dir, bin string, args ...string) (*Proc, error) {
	data := filepath.Join(dir, h.Name+"-data")
	return h.Start(dir, bin, append([]string{"--data-dir", data}, args...)...)
}
