package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StartMosquittoWith is StartMosquitto with extra configuration lines
// appended (a password file, allow_anonymous false, ...), and with
// `user root`: run as root, mosquitto otherwise drops to the mosquitto user,
// which can neither read a 0600 password file nor write its persistence
// file into a test's 0700 temporary folder (it logs the failure and goes
// on, so a restart silently loses every session and queued message).
func (h *Host) StartMosquittoWith(dir string, port int, persist bool, extra string) (*Proc, error) {
	conf := filepath.Join(dir, fmt.Sprintf("mosquitto-%s-%d-with.conf", h.Name, port))
	body := MosquittoConf(dir, port, persist) + "user root\n" + extra
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, err
	}
	p, err := h.Start(dir, "mosquitto", "-c", conf)
	if err != nil {
		return nil, err
	}
	if err := h.WaitPort(port, 10*time.Second); err != nil {
		return p, fmt.Errorf("%w\n%s", err, tail(p.Output()))
	}
	return p, nil
}
