package fail2ban

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEmbeddedMatchDisk: what `vallum fail2ban-action` prints is what the
// repository ships, file for file, and nothing on disk is left out.
func TestEmbeddedMatchDisk(t *testing.T) {
	embedded := map[string]bool{}
	err := fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		embedded[p] = true
		got, _ := fs.ReadFile(Files(), p)
		want, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("embedded %s has no file on disk: %v", p, err)
		} else if !bytes.Equal(got, want) {
			t.Errorf("embedded %s differs from the file on disk", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"action.d", "jail.d"} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if p := dir + "/" + e.Name(); !embedded[p] {
				t.Errorf("%s is on disk but not embedded", p)
			}
		}
	}
	if !bytes.Equal(Action(), mustDisk(t, "action.d/vallum.conf")) || !bytes.Equal(MQTTAction(), mustDisk(t, "action.d/vallum-mqtt.conf")) {
		t.Error("Action or MQTTAction is not the file on disk")
	}
}

func TestJails(t *testing.T) {
	if got, want := strings.Join(Jails(), ","), "nginx,postfix-sasl,sshd"; got != want {
		t.Errorf("Jails() = %s, want %s", got, want)
	}
	for _, name := range Jails() {
		b, err := Jail(name)
		if err != nil || !bytes.Contains(b, []byte("action    = vallum[")) {
			t.Errorf("Jail(%q) = %q, %v: want a jail using the vallum action", name, b, err)
		}
	}
	for _, bad := range []string{"", "apache", "../action.d/vallum"} {
		if _, err := Jail(bad); err == nil {
			t.Errorf("Jail(%q): no error", bad)
		}
	}
}

// TestActionCommands reads the actions as fail2ban's INI files and checks
// what each command does to the shared list.
func TestActionCommands(t *testing.T) {
	tests := []struct {
		file  string
		ban   []string
		unban []string
	}{
		{"action.d/vallum.conf",
			[]string{"<_vallum> ban <list> <ip> --timeout <bantime> --reason <name>"},
			[]string{"<_vallum> unban <list> <ip>"}},
		{"action.d/vallum-mqtt.conf",
			[]string{"t=<bantime>", "-t <list>/add", `-m "<ip> timeout $t"`, "-q 1"},
			[]string{"-t <list>/del", "-m '<ip>'", "-q 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			def := definition(t, mustDisk(t, tt.file))
			for _, s := range tt.ban {
				if !strings.Contains(def["actionban"], s) {
					t.Errorf("actionban = %q, want it to contain %q", def["actionban"], s)
				}
			}
			for _, s := range tt.unban {
				if !strings.Contains(def["actionunban"], s) {
					t.Errorf("actionunban = %q, want it to contain %q", def["actionunban"], s)
				}
			}
			// The list is shared: no host's fail2ban may empty or destroy it.
			for _, k := range []string{"actionstart", "actionstop", "actioncheck"} {
				if v, ok := def[k]; !ok || v != "" {
					t.Errorf("%s = %q (defined %v), want defined and empty", k, v, ok)
				}
			}
			// Without a harmless actionflush, fail2ban unbans every ticket on stop.
			if def["actionflush"] != "true" {
				t.Errorf("actionflush = %q, want true (a no-op)", def["actionflush"])
			}
			if def["actionprolong"] != "%(actionban)s" {
				t.Errorf("actionprolong = %q, want %%(actionban)s", def["actionprolong"])
			}
		})
	}
}

// TestFail2banReadsFiles has the installed fail2ban read the shipped files
// (fail2ban-client -d dumps the configuration without a server or root)
// and checks the commands it would run, parameters substituted.
func TestFail2banReadsFiles(t *testing.T) {
	if _, err := exec.LookPath("fail2ban-client"); err != nil {
		t.Skip("fail2ban-client not installed")
	}
	abs, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, l := range []struct{ from, to string }{
		{filepath.Join(abs, "action.d"), "action.d"},
		{filepath.Join(abs, "jail.d"), "jail.d"},
		{"/etc/fail2ban/filter.d", "filter.d"},
		{"/etc/fail2ban/jail.conf", "jail.conf"},
		{"/etc/fail2ban/fail2ban.conf", "fail2ban.conf"},
		{"/etc/fail2ban/paths-common.conf", "paths-common.conf"},
		{"/etc/fail2ban/paths-debian.conf", "paths-debian.conf"},
	} {
		if err := os.Symlink(l.from, filepath.Join(dir, l.to)); err != nil {
			t.Fatal(err)
		}
	}
	// A jail of the user's own, with broker parameters; `port` of the jail
	// (the service's port) must not reach the broker's port.
	local := "[DEFAULT]\nport = ssh\n[custom]\nenabled = true\nfilter = sshd\nlogpath = /dev/null\nbackend = polling\n" +
		"bantime = -1\naction = vallum[list=site1/blacklist, host=hub.example, port=8883, user=f2b, password_file=/etc/vallum/f2b.pass, vallum_bin=/usr/local/bin/vallum]\n" +
		"         vallum-mqtt[host=hub.example]\n" +
		"[reporting]\nenabled = true\nfilter = sshd\nlogpath = /dev/null\nbackend = polling\naction = vallum-report[list=blacklist, user=edge1]\n"
	if err := os.WriteFile(filepath.Join(dir, "jail.local"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fail2ban-client", "-c", dir, "-d").CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-client -d: %v\n%s", err, out)
	}
	dump := string(out)
	for _, want := range []string{
		`['set', 'sshd', 'addaction', 'vallum']`,
		`['set', 'postfix-sasl', 'addaction', 'vallum']`,
		`['set', 'nginx-http-auth', 'addaction', 'vallum']`,
		`['set', 'nginx-botsearch', 'addaction', 'vallum']`,
		`['actionban', "VALLUM_HOST='' VALLUM_PORT='' VALLUM_USER='' VALLUM_PASSWORD_FILE='' VALLUM_CONFIG='' vallum ban blacklist <ip> --timeout <bantime> --reason sshd"]`,
		`['actionban', "VALLUM_HOST='hub.example' VALLUM_PORT='8883' VALLUM_USER='f2b' VALLUM_PASSWORD_FILE='/etc/vallum/f2b.pass' VALLUM_CONFIG='' /usr/local/bin/vallum ban site1/blacklist <ip> --timeout <bantime> --reason custom"]`,
		`['actionunban', "VALLUM_HOST='hub.example' VALLUM_PORT='8883' VALLUM_USER='f2b' VALLUM_PASSWORD_FILE='/etc/vallum/f2b.pass' VALLUM_CONFIG='' /usr/local/bin/vallum unban site1/blacklist <ip>"]`,
		`['actionban', 't=<bantime>; [ "$t" -lt 0 ] && t=0; mosquitto_pub -h hub.example -p 1883 -q 1  -t blacklist/add -m "<ip> timeout $t"']`,
		`['set', 'sshd', 'bantime.increment', True]`,
		`['actionban', "VALLUM_HOST='' VALLUM_PORT='' VALLUM_USER='edge1' VALLUM_PASSWORD_FILE='' VALLUM_CONFIG='' vallum ban blacklist <ip> --timeout <bantime> --reason reporting --report --local=true"]`,
		`['actionunban', 'true']`,
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("fail2ban's dump lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("dump:\n%s", filterDump(dump))
	}
}

// definition returns the keys of the [Definition] section of an INI file
// as fail2ban reads it: indented lines continue the value.
func definition(t *testing.T, b []byte) map[string]string {
	t.Helper()
	def := map[string]string{}
	section, key := "", ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
			key = ""
		case strings.HasPrefix(trimmed, "["):
			section, key = trimmed, ""
		case line[0] == ' ' || line[0] == '\t':
			if key != "" && section == "[Definition]" {
				def[key] += "\n" + trimmed
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("not key = value: %q", line)
			}
			key = strings.TrimSpace(k)
			if section == "[Definition]" {
				def[key] = strings.TrimSpace(v)
			}
		}
	}
	return def
}

func mustDisk(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// filterDump drops the long regex lines from a fail2ban dump.
func filterDump(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, "regex") && !strings.Contains(l, "datepattern") && !strings.Contains(l, "journalmatch") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestShippedJailsStart runs fail2ban-server with each shipped jail that
// reads a system log, alone, as a user who copied it to jail.d would: on
// Debian 12 there is no /var/log/auth.log nor mail.log (no rsyslog), and a
// jail reading them fails ("Have not found any log file"); the shipped ones
// read the systemd journal and must start. nginx's reads nginx's own files.
func TestShippedJailsStart(t *testing.T) {
	server := "/usr/bin/fail2ban-server"
	if _, err := os.Stat(server); err != nil {
		t.Skip("fail2ban not installed")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import systemd.journal").Run(); err != nil {
		t.Skip("python3-systemd not installed (fail2ban's systemd backend needs it; .ci/install-deps installs it)")
	}
	abs, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, jail := range []string{"sshd", "postfix-sasl"} {
		t.Run(jail, func(t *testing.T) {
			dir := t.TempDir()
			for _, l := range []struct{ from, to string }{
				{filepath.Join(abs, "action.d"), "action.d"},
				{"/etc/fail2ban/filter.d", "filter.d"},
				{"/etc/fail2ban/jail.conf", "jail.conf"},
				{"/etc/fail2ban/paths-common.conf", "paths-common.conf"},
				{"/etc/fail2ban/paths-debian.conf", "paths-debian.conf"},
			} {
				if err := os.Symlink(l.from, filepath.Join(dir, l.to)); err != nil {
					t.Fatal(err)
				}
			}
			sock := filepath.Join(dir, "fail2ban.sock")
			conf := fmt.Sprintf("[Definition]\nloglevel = INFO\nlogtarget = STDOUT\nsocket = %s\npidfile = %s\ndbfile = :memory:\n",
				sock, filepath.Join(dir, "fail2ban.pid"))
			b, _ := Jail(jail)
			os.Mkdir(filepath.Join(dir, "jail.d"), 0o755)
			if err := errors.Join(os.WriteFile(filepath.Join(dir, "fail2ban.conf"), []byte(conf), 0o644),
				os.WriteFile(filepath.Join(dir, "jail.d", "vallum-"+jail+".local"), b, 0o644)); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			srv := exec.Command(server, "-f", "-x", "-c", dir, "-s", sock, "-p", filepath.Join(dir, "fail2ban.pid"))
			srv.Stdout, srv.Stderr = &log, &log
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- srv.Wait() }()
			defer func() {
				exec.Command("fail2ban-client", "-s", sock, "stop").Run()
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					srv.Process.Kill()
					<-exited
				}
			}()
			name := jail
			deadline := time.Now().Add(30 * time.Second)
			for {
				out, err := exec.Command("fail2ban-client", "-s", sock, "status", name).CombinedOutput()
				if err == nil && strings.Contains(string(out), "Journal matches") {
					return // running, on the journal
				}
				select {
				case err := <-exited:
					exited <- err
					t.Fatalf("fail2ban-server with the shipped %s jail exited: %v\n%s", jail, err, log.String())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("jail %s not running after 30 s: %s\n%s", jail, out, log.String())
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}
