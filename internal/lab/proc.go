package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Proc is a process started in a host, its output kept in a log file.
type Proc struct {
	Name string
	Log  string // path of the combined stdout and stderr
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs name with args inside the host in the background, logging to
// dir/<host>-<base name>-<n>.log. The lab kills it on Close.
func (h *Host) Start(dir, name string, args ...string) (*Proc, error) {
	h.lab.mu.Lock()
	if h.lab.closed {
		h.lab.mu.Unlock()
		return nil, errors.New("lab: closed")
	}
	n := len(h.lab.procs)
	h.lab.mu.Unlock()
	logPath := filepath.Join(dir, fmt.Sprintf("%s-%s-%d.log", h.Name, filepath.Base(name), n))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := h.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, h.Name, err)
	}
	p := &Proc{Name: h.Name + "/" + filepath.Base(name), Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	h.lab.mu.Lock()
	h.lab.procs = append(h.lab.procs, p)
	h.lab.mu.Unlock()
	return p, nil
}

// Stop sends SIGTERM and waits up to 10 s for the process to end; it
// returns the exit error (nil for exit 0), or an error when it had to kill.
func (p *Proc) Stop() error {
	if p.Exited() {
		return p.err
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(10 * time.Second):
		p.Kill()
		return fmt.Errorf("%s did not stop within 10 s of SIGTERM; killed", p.Name)
	}
}

// Kill ends the process at once (SIGKILL to its process group).
func (p *Proc) Kill() {
	if !p.Exited() {
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// Signal sends sig to the process (for example SIGHUP).
func (p *Proc) Signal(sig syscall.Signal) { p.signal(sig) }

func (p *Proc) signal(sig syscall.Signal) {
	// `ip netns exec` execs the command, so the pid is the process itself.
	syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process ends; Err is its exit error then.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit error once Done is closed.
func (p *Proc) Err() error { return p.err }

// Output returns what the process has logged so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// WaitLog polls the log until it contains s.
func (p *Proc) WaitLog(s string, timeout time.Duration) error {
	return Eventually(timeout, func() (bool, string) {
		if p.Exited() {
			return false, fmt.Sprintf("%s exited (%v) before logging %q:\n%s", p.Name, p.err, s, tail(p.Output()))
		}
		return strings.Contains(p.Output(), s), fmt.Sprintf("%s never logged %q:\n%s", p.Name, s, tail(p.Output()))
	})
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}

// Eventually polls cond every 20 ms until it holds or timeout passes; the
// error carries cond's last explanation.
func Eventually(timeout time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
