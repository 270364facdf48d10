//go:build !(vallum_small && (mips || mipsle))

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/vallum/vallum/broker"
)

// allowBroker runs the embedded broker on loopback with an admin, a host
// and a reporter login (password "pw-" + name) and returns its port.
func allowBroker(t *testing.T) string {
	t.Helper()
	var users []broker.User
	for _, u := range []broker.User{
		{Name: broker.RoleAdmin, Role: broker.RoleAdmin},
		{Name: broker.RoleHost, Role: broker.RoleHost, Lists: []string{"blacklist"}},
		{Name: broker.RoleReporter, Role: broker.RoleReporter, Lists: []string{"blacklist"}},
	} {
		hash, err := broker.HashPassword("pw-" + u.Name)
		if err != nil {
			t.Fatal(err)
		}
		u.Password = hash
		users = append(users, u)
	}
	b, err := broker.New(broker.Options{Listeners: []broker.Listener{{Kind: broker.KindTCP, Addr: "127.0.0.1:0"}},
		ExtraUsers: users, Lists: []string{"blacklist"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	_, port, _ := strings.Cut(strings.TrimPrefix(b.Addrs()[0], "tcp://"), ":")
	return port
}

func runAllow(t *testing.T, port, user string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	t.Setenv("VALLUM_CONFIG", "")
	t.Setenv("VALLUM_PASSWORD", "pw-"+user)
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append(append([]string{"allow"}, args...), "-h", "127.0.0.1", "-p", port, "-u", user, "--data-dir", t.TempDir()))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// An admin adds, lists and deletes entries; a host or a reporter login
// that tries is told it may not, and the allowlist is unchanged.
func TestAllowCommands(t *testing.T) {
	port := allowBroker(t)
	if _, errOut, err := runAllow(t, port, "admin", "add", "198.51.100.0/24", "--comment", "office"); err != nil {
		t.Fatalf("allow add as admin: %v\n%s", err, errOut)
	}
	if _, errOut, err := runAllow(t, port, "admin", "add", "2001:db8::7"); err != nil {
		t.Fatalf("allow add as admin: %v\n%s", err, errOut)
	}
	for _, user := range []string{"host", "reporter"} {
		for _, args := range [][]string{{"add", "203.0.113.0/24"}, {"del", "198.51.100.0/24"}} {
			_, _, err := runAllow(t, port, user, args...)
			if err == nil || !strings.Contains(err.Error(), "admin") {
				t.Errorf("allow %s as %s: %v, want an error that says only admins may", args[0], user, err)
			}
		}
	}
	out, errOut, err := runAllow(t, port, "host", "list")
	if err != nil {
		t.Fatalf("allow list as host: %v\n%s", err, errOut)
	}
	for _, want := range []string{"198.51.100.0/24  office", "2001:db8::7", "2 entries"} {
		if !strings.Contains(out, want) {
			t.Errorf("allow list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "203.0.113.0") {
		t.Errorf("an entry a host tried to add is listed:\n%s", out)
	}
	if _, _, err := runAllow(t, port, "reporter", "list"); err == nil {
		t.Error("allow list as reporter: no error, want one (reporters do not read the allowlist)")
	}
	if _, errOut, err := runAllow(t, port, "admin", "del", "198.51.100.0/24"); err != nil {
		t.Fatalf("allow del as admin: %v\n%s", err, errOut)
	}
	if _, errOut, _ := runAllow(t, port, "admin", "del", "192.0.2.1"); !strings.Contains(errOut, "not on the shared allowlist") {
		t.Errorf("allow del of an absent entry does not say so:\n%s", errOut)
	}
	if out, _, _ := runAllow(t, port, "admin", "list"); !strings.Contains(out, "1 entries") || strings.Contains(out, "198.51.100.0/24") {
		t.Errorf("after del:\n%s", out)
	}
	for _, bad := range [][]string{{"add", "0.0.0.0/0"}, {"add", "office"}, {"add", "192.0.2.1", "--comment", strings.Repeat("x", 65)}} {
		if _, _, err := runAllow(t, port, "admin", bad...); err == nil {
			t.Errorf("allow %v: no error", bad)
		}
	}
}
