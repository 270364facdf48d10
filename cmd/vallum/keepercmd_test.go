//go:build !vallum_small

package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vallum/vallum/internal/datadir"
)

// The keeper keeps lists on another broker: without one it says what to
// give, and starts nothing.
func TestKeeperNeedsABroker(t *testing.T) {
	_, err := vallum(t, "", "keeper", "-t", "blacklist", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "-h HOST or --broker URL") {
		t.Fatalf("vallum keeper without a broker: %v, want an error naming -h and --broker", err)
	}
	_, err = vallum(t, "", "keeper", "-h", "127.0.0.1", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "-t TOPIC") {
		t.Fatalf("vallum keeper without a list: %v, want an error naming -t", err)
	}
}

// A second keeper on a data dir in use is refused at once, naming the
// first one's pid, before it connects anywhere: two keepers writing one
// copy would corrupt it.
func TestKeeperSecondOnDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	lock, err := datadir.Acquire(datadir.Dir(dir).KeeperLock(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	// Port 1 on loopback: were the lock not checked first, this would
	// retry connecting instead of failing.
	_, err = vallum(t, "", "keeper", "-h", "127.0.0.1", "-p", "1", "-t", "blacklist", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "in use by another vallum (pid") {
		t.Fatalf("second keeper on %s: %v, want a refusal naming the first one's pid", dir, err)
	}
}

// The keeper's client id is keeper-HOSTNAME, or --client-id given on its
// command line; never the config file's client_id, which on a host that
// runs the daemon is the bridge's (two clients with one id knock each
// other off the broker every second).
func TestKeeperClientID(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "vallum.yaml")
	if err := os.WriteFile(cfg, []byte("client_id: vallum-bridge-id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "keeper-" + host},
		{[]string{"--client-id", "keeper-a"}, "keeper-a"},
	} {
		cmd := newKeeperCmd()
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		t.Setenv("VALLUM_CONFIG", cfg)
		c, err := loadConfig(cmd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.keeperClientID(cmd)
		if err != nil || got != tc.want {
			t.Errorf("args %v: client id %q (%v), want %q", tc.args, got, err, tc.want)
		}
	}
}

// The keeper reads the config file and the environment like the rest
// (contrib/systemd/vallum-keeper.service runs it with --config only).
func TestKeeperConfigFile(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	cfg := filepath.Join(dir, "keeper.yaml")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := "host: n1,n2\nuser: keeper\npassword_file: " + pw + "\ntopic: [blacklist, site1/blacklist]\nmax_payload: 4096\nallow: [192.0.2.0/24]\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VALLUM_CONFIG", cfg)
	t.Setenv("VALLUM_WIDEST_V4", "16")
	cmd := newKeeperCmd()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(cmd)
	if err != nil {
		t.Fatal(err)
	}
	ko, ao, err := c.keeperOptions(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ko.Roots, " "); got != "blacklist site1/blacklist" {
		t.Errorf("lists %q", got)
	}
	if got := urlString(ao.Brokers); got != "tcp://n1:1883,tcp://n2:1883" {
		t.Errorf("brokers %q", got)
	}
	if ao.Username != "keeper" || ao.Password != "s3cret" {
		t.Errorf("login %q/%q", ao.Username, ao.Password)
	}
	if l := ko.Limits; l.MaxPayload != 4096 || l.MinBitsV4 != 16 || len(l.Allow) != 1 || l.Allow[0].String() != "192.0.2.0/24" {
		t.Errorf("limits %+v", l)
	}
}
