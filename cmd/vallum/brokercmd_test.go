package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/broker"
)

// vallum runs the CLI with args and stdin, as a user would, and returns
// what it printed and its error.
func vallum(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	t.Setenv("VALLUM_CONFIG", "")
	root := newRootCmd()
	var out bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// logIn starts a broker on a free loopback port with the users file and
// reports whether user gets in with pw.
func logIn(t *testing.T, users, user, pw string) bool {
	t.Helper()
	b, err := broker.New(broker.Options{Listeners: []broker.Listener{{Kind: broker.KindTCP, Addr: "127.0.0.1:0"}}, UsersFile: users})
	if err != nil {
		t.Fatalf("the broker refuses the users file: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.Addrs()[0]).SetClientID("t-" + user).
		SetUsername(user).SetPassword(pw).SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetConnectRetry(false))
	tok := cl.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("connect timed out")
	}
	defer cl.Disconnect(50)
	return tok.Error() == nil
}

// add-user writes a users file the broker loads, with a password read from
// standard input, and changes a password the same way; the password never
// appears in what it prints or in the file.
func TestBrokerAddUser(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.yaml")
	out, err := vallum(t, "first-pw-8c1e\n", "broker", "add-user", "edge1", "--users", users)
	if err != nil {
		t.Fatalf("add-user: %v\n%s", err, out)
	}
	if !strings.Contains(out, "user edge1 added with role host") {
		t.Errorf("add-user printed %q, want it to say edge1 was added", out)
	}
	out2, err := vallum(t, "fail2ban-pw-77\n", "broker", "add-user", "fail2ban", "--role", "reporter", "--list", "blacklist", "--users", users)
	if err != nil {
		t.Fatalf("add-user: %v\n%s", err, out2)
	}
	if !logIn(t, users, "edge1", "first-pw-8c1e") || !logIn(t, users, "fail2ban", "fail2ban-pw-77") {
		t.Fatal("a user added by add-user cannot log in")
	}
	if logIn(t, users, "edge1", "wrong") {
		t.Fatal("edge1 logs in with a wrong password")
	}
	out3, err := vallum(t, "second-pw-2b\n", "broker", "add-user", "edge1", "--users", users)
	if err != nil || !strings.Contains(out3, "password of edge1 changed") {
		t.Fatalf("add-user of an existing user: %v\n%s", err, out3)
	}
	if logIn(t, users, "edge1", "first-pw-8c1e") || !logIn(t, users, "edge1", "second-pw-2b") {
		t.Error("after a password change: the old password works or the new one does not")
	}
	if !logIn(t, users, "fail2ban", "fail2ban-pw-77") {
		t.Error("changing edge1's password broke fail2ban's")
	}
	file, _ := os.ReadFile(users)
	for _, secret := range []string{"first-pw-8c1e", "second-pw-2b", "fail2ban-pw-77"} {
		if strings.Contains(out+out2+out3+string(file), secret) {
			t.Errorf("password %q printed or stored in clear", secret)
		}
	}
	// The file is what check-config and the daemon accept for a hub.
	if out, err := checkConfig(t, "-t", "blacklist", "--listen", "127.0.0.1:0", "--listen", "0.0.0.0:0", "--users", users); err != nil {
		t.Errorf("check-config refuses the users file add-user wrote: %v\n%s", err, out)
	}
}

func TestBrokerAddUserRefuses(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.yaml")
	tests := []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"no password", "", []string{"edge1", "--users", users}, "empty password"},
		{"password on the command line", "x\n", []string{"edge1", "--users", users, "--password", "x"}, "unknown flag"},
		{"unknown role", "pw\n", []string{"edge1", "--users", users, "--role", "root"}, "unknown role"},
		{"no users file", "pw\n", []string{"edge1"}, "--users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := vallum(t, tt.stdin, append([]string{"broker", "add-user"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("add-user %s = %v, want an error naming %q\n%s", tt.args, err, tt.want, out)
			}
			if _, err := os.Stat(users); err == nil {
				t.Errorf("a users file was written")
			}
		})
	}
}

// The hub's keeper refuses what the bridges refuse: it takes their limits
// from the configuration (an --allow that does not parse is the bridge's
// error to report).
func TestKeeperLimitsFromConfig(t *testing.T) {
	c := loaded(t, "--max-payload", "500", "--widest-v4", "20", "--allow", "198.51.100.0/24", "--allow", "bogus")
	l := c.keeperLimits()
	if l.MaxPayload != 500 || l.MinBitsV4 != 20 || l.MinBitsV6 != 32 || len(l.Allow) != 1 || l.Allow[0].String() != "198.51.100.0/24" {
		t.Errorf("keeper limits %+v, want the bridge's: 500 bytes, /20, /32, 198.51.100.0/24", l)
	}
}
