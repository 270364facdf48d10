package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// plainYAML, written out for size, says what its regular expression says
// about every string of up to 5 bytes from an alphabet of each class it
// tells apart (letters, digits, the punctuation it allows, the colon, a
// space, what it refuses, a multi-byte rune and a byte that is no UTF-8).
func TestPlainYAMLAsRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_./][A-Za-z0-9_./@+=,:-]*( [A-Za-z0-9_./@+=,-]+)*$`)
	alphabet := []string{"a", "Z", "0", "_", ".", "/", "@", "+", "=", ",", "-", ":", " ", "#", "\"", "é", "\xff"}
	n := 0
	var walk func(s string, depth int)
	walk = func(s string, depth int) {
		if want := re.MatchString(s); plainYAML(s) != want {
			t.Fatalf("plainYAML(%q) = %v, the regexp says %v", s, !want, want)
		}
		n++
		if depth == 0 {
			return
		}
		for _, c := range alphabet {
			walk(s+c, depth-1)
		}
	}
	walk("", 5)
	if n < 1000000 {
		t.Fatalf("only %d strings checked", n)
	}
}

// check-config's YAML, written by hand, reads back as the same settings,
// whatever the strings hold.
func TestWriteYAMLRoundTrip(t *testing.T) {
	tricky := []string{"", "plain", "inet vallum", "a: b", "a:", "#x", "x #y", "- x", "true", "No", "null",
		"~", "1883", "1e3", " lead", "trail ", "fd00::/8", "127.0.0.1:1883", `q"uote`, "back\\slash",
		"tab\there", "new\nline", "ünï", "[x]", "{x}", "*x", "&x", "!x", "%x", "@x", "'x'", "x,y"}
	for _, s := range tricky {
		c := config{Host: s, Broker: []string{}, Topic: []string{s, "blacklist"}, Allow: []string{}, Listen: []string{}, BrokerLimit: []string{}, WSHost: []string{}, KillConnections: []string{s}, Policy: []string{s}, SensorIgnorePorts: []string{}, Port: 1883, TLS: true, MaxElem: 7}
		var b bytes.Buffer
		writeYAML(&b, c)
		var got config
		if err := yaml.Unmarshal(b.Bytes(), &got); err != nil {
			t.Errorf("%q: output does not parse: %v\n%s", s, err, b.String())
			continue
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("%q: read back as %+v, want %+v\n%s", s, got, c, b.String())
		}
	}
}

// check-config refuses what the daemon refuses, naming the cause, and the
// daemon (with the same file) refuses it too: a configuration check-config
// passes must not fail at start, and one it fails must not start.
func TestCheckConfigRefusesWhatTheDaemonRefuses(t *testing.T) {
	tests := []struct {
		file string
		want []string // each must be in both messages; none for a good config
	}{
		{"good_embedded_loopback.yaml", nil},
		{"good_network_users.yaml", nil},
		{"good_network_anonymous.yaml", nil},
		{"good_kill_connections.yaml", nil},
		{"bad_network_no_users.yaml", []string{"anonymous", "--users", "--allow-anonymous"}},
		{"bad_users_missing.yaml", []string{"testdata/no-such-users.yaml", "no such file"}},
		{"bad_users_yaml.yaml", []string{"testdata/users_bad_yaml.yaml", "yaml:"}},
		{"bad_users_plaintext.yaml", []string{"testdata/users_plaintext.yaml", "edge1", "plaintext"}},
		{"bad_users_role.yaml", []string{"testdata/users_bad_role.yaml", "superuser"}},
		{"bad_users_unknown_key.yaml", []string{"testdata/users_unknown_key.yaml", "passwd"}},
		{"bad_users_empty.yaml", []string{"testdata/users_empty.yaml", "no users"}},
		{"bad_tls_no_cert.yaml", []string{"tls://127.0.0.1:0", "--tls-cert"}},
		{"bad_tls_cert_missing.yaml", []string{"/nonexistent/vallum-test-cert.pem"}},
		{"bad_listen_no_port.yaml", []string{"--listen", "0.0.0.0"}},
		{"bad_max_payload.yaml", []string{"--max-payload -1"}},
		{"bad_max_payload_zero.yaml", []string{"--max-payload 0"}},
		{"bad_widest_v4.yaml", []string{"--widest-v4 0", "1-32"}},
		{"bad_widest_v6.yaml", []string{"--widest-v6 129", "1-128"}},
		{"bad_maxelem.yaml", []string{"--maxelem 0"}},
		{"bad_port.yaml", []string{"--port 70000"}},
		{"bad_nft_rules_ipset.yaml", []string{"--nft-rules needs --backend nft"}},
		{"bad_metrics.yaml", []string{"--metrics \"9101\"", "HOST:PORT"}},
		{"bad_keeper_embedded.yaml", []string{"--keeper needs -h"}},
		{"bad_kill_connections.yaml", []string{"--kill-connections \"blocklist\"", "no such list"}},
		{"bad_sensor.yaml", []string{"--sensor \"blocklist\"", "--sensor-ports 0", "--sensor-ignore-ports"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			if strings.Contains(tt.file, "kill_connections") && !killBuilt {
				t.Skip("--kill-connections is not in this build (MIPS router builds)")
			}
			if strings.Contains(tt.file, "sensor") && !sensorBuilt {
				t.Skip("--sensor is not in this build (MIPS router builds)")
			}
			if strings.Contains(tt.file, "keeper") && !keeperBuilt {
				t.Skip("--keeper is not in this build (router builds)")
			}
			cfg := filepath.Join("testdata", tt.file)
			out, err := checkConfig(t, "--config", cfg)
			if tt.want == nil {
				if err != nil || !strings.Contains(out, "# configuration OK") {
					t.Fatalf("check-config %s: %v, want OK:\n%s", tt.file, err, out)
				}
				run := runDaemonFor
				if strings.HasPrefix(tt.file, "good_network") {
					run = runDaemonInNetns // it listens on 0.0.0.0: not on the host's addresses
				}
				if err := run(t, cfg); err != nil {
					t.Fatalf("check-config passes %s, but the daemon refuses it: %v", tt.file, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("check-config %s passed, want a failure naming %q:\n%s", tt.file, tt.want, out)
			}
			derr := runDaemonFor(t, cfg)
			if derr == nil {
				t.Fatalf("the daemon started with %s, which check-config refuses", tt.file)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("check-config %s: message does not name %q:\n%v", tt.file, w, err)
				}
				if !strings.Contains(derr.Error(), w) {
					t.Errorf("daemon with %s: message does not name %q:\n%v", tt.file, w, derr)
				}
			}
		})
	}
}

// runDaemonFor starts `vallum --config cfg --backend dryrun` and returns its
// error, or nil once its bridge has subscribed and synced with the broker
// (it is then stopped). Stopping it only then, not at a fixed time, keeps
// clear of a shutdown that hangs while the bridge's first CONNECT is in
// flight (mochi waits for a client it accepted after closing its clients).
func runDaemonFor(t *testing.T, cfg string) error {
	t.Helper()
	t.Setenv("VALLUM_CONFIG", "")
	root := newRootCmd()
	out := &syncBuffer{}
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs([]string{"--config", cfg, "--backend", "dryrun", "--data-dir", t.TempDir()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(out.String(), "subscribed and synced") {
		select {
		case err := <-done:
			if err == nil {
				err = fmt.Errorf("the daemon exited without an error before it synced:\n%s", out)
			}
			return err
		case <-deadline:
			cancel()
			<-done
			return fmt.Errorf("the daemon did not sync in 30 s:\n%s", out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the daemon's shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the daemon did not stop 15 s after its context ended:\n%s", out)
	}
	return nil
}

// syncBuffer is a bytes.Buffer the daemon's goroutines may write to while
// the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An unknown key of the config file is named with the file, its line and
// the key meant, not as viper's "” has invalid keys".
func TestUnknownKeyMessage(t *testing.T) {
	_, err := checkConfig(t, "--config", filepath.Join("testdata", "bad_unknown_keys.yaml"))
	if err == nil {
		t.Fatal("check-config accepts unknown keys")
	}
	msg := err.Error()
	for _, want := range []string{
		`testdata/bad_unknown_keys.yaml, line 2: unknown key "topics" (did you mean topic?)`,
		`line 3: unknown key "max-payload" (did you mean max_payload?)`,
		`line 4: unknown key "banlist_size" (keys are the long flag names`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "''") {
		t.Errorf("message still has viper's '':\n%s", msg)
	}
	// Keys are case-insensitive, as viper reads them.
	p := filepath.Join(t.TempDir(), "upper.yaml")
	os.WriteFile(p, []byte("Host: 127.0.0.1\nTopic: [blacklist]\n"), 0o600)
	if out, err := checkConfig(t, "--config", p); err != nil {
		t.Errorf("Host:/Topic: refused: %v\n%s", err, out)
	}
}

// runDaemonInNetns is runDaemonFor in a network namespace of its own (the
// test binary again, under unshare), for configurations that listen on
// every address. Without root it runs nothing and says so.
func runDaemonInNetns(t *testing.T, cfg string) error {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Logf("not root: the daemon is not run with %s (it would listen on the host's addresses)", cfg)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--net", "sh", "-c", `ip link set lo up && exec "$0" "$@"`,
		os.Args[0], "-test.run=^TestDaemonHelper$", "-test.v", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), "VALLUM_TEST_DAEMON_CONFIG="+cfg)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestDaemonHelper") {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

// TestDaemonHelper is runDaemonInNetns's daemon, not a test of its own.
func TestDaemonHelper(t *testing.T) {
	cfg := os.Getenv("VALLUM_TEST_DAEMON_CONFIG")
	if cfg == "" {
		t.Skip("runs only under runDaemonInNetns")
	}
	if err := runDaemonFor(t, cfg); err != nil {
		t.Fatal(err)
	}
}
