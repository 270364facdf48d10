package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// checkConfig runs `vallum check-config args...` as a user would and returns
// what it printed (stdout and stderr) and its error.
func checkConfig(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Setenv("VALLUM_CONFIG", "") // a config from the environment would leak in
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"check-config", "--data-dir", t.TempDir()}, args...))
	err := root.Execute()
	return out.String(), err
}

// loaded returns the configuration check-config would see for args.
func loaded(t *testing.T, args ...string) config {
	t.Helper()
	t.Setenv("VALLUM_CONFIG", "")
	root := newRootCmd()
	var c config
	var loadErr error
	for _, sub := range root.Commands() {
		if sub.Name() == "check-config" {
			sub.RunE = func(cmd *cobra.Command, _ []string) error {
				c, loadErr = loadConfig(cmd)
				return nil
			}
		}
	}
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(append([]string{"check-config", "--data-dir", t.TempDir()}, args...))
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	return c
}

// private copies a testdata file to a temp folder with mode perm (git keeps
// no modes but the executable bit).
func private(t *testing.T, name string, perm os.FileMode) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

func TestCheckConfigFixtures(t *testing.T) {
	tests := []struct {
		file string
		want []string // each must be in the output; none for a good config
	}{
		{"good.yaml", nil},
		{"bad_unknown_key.yaml", []string{"banlist_size"}},
		{"bad_topic_wildcard.yaml", []string{"blacklist/#"}},
		{"bad_allow.yaml", []string{"--allow", "10.0.0.0/33"}},
		{"bad_log_level.yaml", []string{"--log-level", "loud"}},
		{"bad_qos.yaml", []string{"--qos 3"}},
		{"bad_backend.yaml", []string{"--backend", "foo", "ipset"}},
		{"bad_cafile.yaml", []string{"/nonexistent/vallum-test-ca.pem"}},
		{"good_sensor.yaml", nil},
		{"bad_sensor.yaml", []string{"--sensor \"blocklist\"", "no such list", "--sensor-group 70000", "--sensor-ports 0",
			"--sensor-window 0s", "--sensor-ignore-ports \"80-70\"", "--sensor-rate 0", "--sensor-ipv6-prefix 200",
			"--sensor-report: not on the hub"}},
	}
	for _, tt := range tests {
		for i, w := range tt.want {
			if w == "--sensor-report: not on the hub" && !reportsBuilt { // the MIPS builds
				tt.want[i] = "--sensor-report: reports are not in this build"
			}
		}
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			if strings.Contains(tt.file, "sensor") && !sensorBuilt {
				t.Skip("--sensor is not in this build (MIPS router builds)")
			}
			out, err := checkConfig(t, "--config", filepath.Join("testdata", tt.file))
			msg := out
			if err != nil {
				msg += "\nerror: " + err.Error()
			}
			if tt.want == nil {
				if err != nil || !strings.Contains(out, "# configuration OK") {
					t.Fatalf("check-config %s: %v, want OK:\n%s", tt.file, err, msg)
				}
				return
			}
			if err == nil {
				t.Fatalf("check-config %s passed, want a failure naming %q:\n%s", tt.file, tt.want, msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("check-config %s: message does not name %q:\n%s", tt.file, w, msg)
				}
			}
		})
	}
}

func TestEnvOverridesFile(t *testing.T) {
	t.Setenv("VALLUM_TOPIC", "fromenv")
	t.Setenv("VALLUM_HOST", "192.0.2.50")
	c := loaded(t, "--config", filepath.Join("testdata", "good.yaml"))
	if c.Host != "192.0.2.50" {
		t.Errorf("host = %q, want VALLUM_HOST's 192.0.2.50 over the file's 127.0.0.1", c.Host)
	}
	if len(c.Topic) != 1 || c.Topic[0] != "fromenv" {
		t.Errorf("topic = %q, want VALLUM_TOPIC's [fromenv] over the file's", c.Topic)
	}
	out, err := checkConfig(t, "--config", filepath.Join("testdata", "good.yaml"))
	if err != nil || !strings.Contains(out, "192.0.2.50") || !strings.Contains(out, "fromenv") {
		t.Errorf("check-config with env: %v, want the env values printed:\n%s", err, out)
	}
}

const secret = "pw-9d1c-never-printed"

func TestPasswordFromFileAndEnv(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  string
		args []string
	}{
		{"password-file", "", []string{"--password-file", pwFile}},
		{"VALLUM_PASSWORD", secret, nil},
		{"config file", "", []string{"--config", private(t, "password.yaml", 0o600)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("VALLUM_PASSWORD", tt.env)
			args := append([]string{"-h", "127.0.0.1", "-t", "blacklist", "-u", "fw"}, tt.args...)
			want := secret
			if tt.name == "config file" {
				want = "s3cret-in-file-9d1c"
			}
			pw, err := loaded(t, args...).password()
			if err != nil || pw != want {
				t.Errorf("password() = %q, %v; want %q", pw, err, want)
			}
			out, err := checkConfig(t, args...)
			if err != nil {
				t.Fatalf("check-config: %v\n%s", err, out)
			}
			if strings.Contains(out, want) {
				t.Errorf("check-config printed the password:\n%s", out)
			}
			if strings.Contains(out, "readable by every user") {
				t.Errorf("warning for a file that is 0600:\n%s", out)
			}
		})
	}
}

func TestWorldReadableSecretsWarn(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(pwFile, 0o644)
	tests := []struct {
		name string
		args []string
		file string // named in the warning
	}{
		{"password file", []string{"-h", "127.0.0.1", "-t", "blacklist", "--password-file", pwFile}, pwFile},
		{"config file with a password", nil, ""},
	}
	tests[1].file = private(t, "password.yaml", 0o644)
	tests[1].args = []string{"--config", tests[1].file}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := checkConfig(t, tt.args...)
			if err != nil {
				t.Fatalf("check-config: %v\n%s", err, out)
			}
			if !strings.Contains(out, "readable by every user") || !strings.Contains(out, tt.file) {
				t.Errorf("no warning naming %s:\n%s", tt.file, out)
			}
			if strings.Contains(out, secret) || strings.Contains(out, "s3cret-in-file-9d1c") {
				t.Errorf("password printed:\n%s", out)
			}
		})
	}
	// A world-readable config without a password is fine.
	out, err := checkConfig(t, "--config", private(t, "good.yaml", 0o644))
	if err != nil || strings.Contains(out, "readable by every user") {
		t.Errorf("good.yaml 0644: %v, want no warning:\n%s", err, out)
	}
}

// TestPasswordOnCommandLineWarns: -P is visible in ps.
func TestPasswordOnCommandLineWarns(t *testing.T) {
	out, err := checkConfig(t, "-h", "127.0.0.1", "-t", "blacklist", "-u", "fw", "-P", secret)
	if err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	if !strings.Contains(out, "visible to every user in ps") {
		t.Errorf("no warning about -P:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("password printed:\n%s", out)
	}
}

// --legacy-state unset leaves a list already in the old spelling as it is
// (keeper LegacyAuto); given, on or off, in any of its spellings, it
// decides alone.
func TestLegacyStateAuto(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vallum.yaml")
	if err := os.WriteFile(cfg, []byte("legacy_state: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args       []string
		env        string
		legacy, ok bool // LegacyState, LegacyAuto
	}{
		{nil, "", false, true},
		{[]string{"--legacy-state"}, "", true, false},
		{[]string{"--legacy-state=false"}, "", false, false},
		{nil, "false", false, false},
		{[]string{"--config", cfg}, "", false, false},
	} {
		t.Run(strings.Join(tc.args, " ")+" env="+tc.env, func(t *testing.T) {
			t.Setenv("VALLUM_LEGACY_STATE", tc.env)
			if tc.env == "" {
				os.Unsetenv("VALLUM_LEGACY_STATE") // t.Setenv restores it after
			}
			c := loaded(t, append([]string{"-t", "blacklist"}, tc.args...)...)
			o, err := c.brokerOptions(nil, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if o.LegacyState != tc.legacy || o.LegacyAuto != tc.ok {
				t.Errorf("LegacyState %v, LegacyAuto %v; want %v, %v", o.LegacyState, o.LegacyAuto, tc.legacy, tc.ok)
			}
		})
	}
}
