package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StartMosquittoWith is StartMosquitto with extra configuration lines
// appended (a password file, allow_anonymous false, ...).
func (h *Host) StartMosquittoWith(dir string, port int, persist bool, extra string) (*Proc, error) {
	conf := filepath.Join(dir, fmt.Sprintf("mosquitto-%s-%d-with.conf", h.Name, port))
	body := MosquittoConf(dir, port, persist) + extra
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
