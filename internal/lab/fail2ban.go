package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Fail2ban is a fail2ban server running in a host with a private
// configuration, socket, pid file and database, all in one folder, so it
// never meets the machine's own fail2ban.
type Fail2ban struct {
	*Proc
	Host *Host
	Dir  string // the configuration folder (-c)
	Sock string
}

// Fail2banConfig is what a test gives its fail2ban.
type Fail2banConfig struct {
	Actions map[string][]byte // action.d/NAME.conf contents, by NAME
	Jails   string            // the jail.local text
}

// StartFail2ban writes the configuration to dir/<host>-fail2ban (filters
// from the system's /etc/fail2ban/filter.d), runs fail2ban-server in the
// foreground in the host, and waits until it answers a ping.
func (h *Host) StartFail2ban(dir string, cfg Fail2banConfig) (*Fail2ban, error) {
	conf := filepath.Join(dir, h.Name+"-fail2ban")
	if err := os.MkdirAll(filepath.Join(conf, "action.d"), 0o755); err != nil {
		return nil, err
	}
	f := &Fail2ban{Host: h, Dir: conf, Sock: filepath.Join(conf, "fail2ban.sock")}
	main := fmt.Sprintf("[Definition]\nloglevel = INFO\nlogtarget = STDOUT\nsocket = %s\npidfile = %s\ndbfile = %s\ndbpurgeage = 1d\nallowipv6 = auto\n",
		f.Sock, filepath.Join(conf, "fail2ban.pid"), filepath.Join(conf, "fail2ban.sqlite3"))
	files := map[string][]byte{"fail2ban.conf": []byte(main), "jail.local": []byte(cfg.Jails)}
	for name, b := range cfg.Actions {
		files[filepath.Join("action.d", name+".conf")] = b
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(conf, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.Symlink("/etc/fail2ban/filter.d", filepath.Join(conf, "filter.d")); err != nil && !os.IsExist(err) {
		return nil, err
	}
	p, err := h.Start(dir, "fail2ban-server", "-f", "-x", "-c", conf, "-s", f.Sock, "-p", filepath.Join(conf, "fail2ban.pid"))
	if err != nil {
		return nil, err
	}
	f.Proc = p
	return f, Eventually(30*time.Second, func() (bool, string) {
		if p.Exited() {
			return false, fmt.Sprintf("fail2ban-server exited: %v\n%s", p.Err(), tail(p.Output()))
		}
		out, err := f.Client("ping")
		return err == nil && strings.Contains(out, "pong"), fmt.Sprintf("fail2ban does not answer: %v %s\n%s", err, out, tail(p.Output()))
	})
}

// Client runs fail2ban-client on the server's socket inside the host.
func (f *Fail2ban) Client(args ...string) (string, error) {
	return f.Host.Exec("fail2ban-client", append([]string{"-s", f.Sock}, args...)...)
}

// sshdPID numbers the fake sshd processes: the sshd filter ties lines of
// one pid together, so each failure must come from a session of its own.
var sshdPID atomic.Int32

// SSHFailures appends n sshd "Failed password" lines for addr, stamped now
// (fail2ban ignores old lines), in the syslog format of Debian's sshd
// filter, each from a pid of its own.
func SSHFailures(logPath, addr string, n int) error {
	fh, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	var b strings.Builder
	now := time.Now().Format(time.Stamp)
	for i := range n {
		fmt.Fprintf(&b, "%s hostA sshd[%d]: Failed password for root from %s port %d ssh2\n", now, 4000+sshdPID.Add(1), addr, 40000+i)
	}
	if _, err := fh.WriteString(b.String()); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}
