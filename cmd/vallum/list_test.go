package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/broker"
	"github.com/vallum/vallum/internal/retained"
	"github.com/vallum/vallum/internal/wire"
)

// listBroker runs the embedded broker on loopback with an admin, a
// reporter and a "halfsync" login (password "pw-" + name) and returns its
// port.
func listBroker(t *testing.T) string {
	t.Helper()
	var users []broker.User
	for _, u := range []broker.User{
		{Name: broker.RoleAdmin, Role: broker.RoleAdmin},
		{Name: broker.RoleReporter, Role: broker.RoleReporter},
		{Name: "halfsync", Role: broker.RoleReporter, Subscribe: []string{wire.MarkerPrefix + "#"}},
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

// retainBans publishes n retained bans of list blacklist, 2,000 in flight.
func retainBans(t *testing.T, port string, n int) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://127.0.0.1:" + port).
		SetClientID("list-test-pub").SetUsername("admin").SetPassword("pw-admin"))
	if err := wait(c.Connect(), "connect"); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(250)
	now := time.Now()
	payload := wire.EncodeState(wire.State{At: now, Expires: now.Add(time.Hour), Reason: "test"})
	window := make(chan mqtt.Token, 2000)
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for tok := range window {
			if err := wait(tok, "publish"); err != nil {
				errs <- err
				return
			}
		}
	}()
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		window <- c.Publish(wire.StateTopic("blacklist", p), 1, true, payload)
	}
	close(window)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func runList(t *testing.T, port, user string) (stdout, stderr string, err error) {
	t.Helper()
	t.Setenv("VALLUM_CONFIG", "")
	t.Setenv("VALLUM_PASSWORD", "pw-"+user)
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"list", "blacklist", "-h", "127.0.0.1", "-p", port, "-u", user, "--data-dir", t.TempDir()})
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// vallum list reads the whole list, however long the broker takes to send
// it: on 100,000 retained bans it printed "0 active bans" and exited 0 (its
// 500 ms of quiet counted from before its SUBSCRIBE).
func TestListReadsWholeList(t *testing.T) {
	const n = 100000
	port := listBroker(t)
	retainBans(t, port, n)
	for _, user := range []string{broker.RoleAdmin, broker.RoleReporter} {
		t.Run(user, func(t *testing.T) {
			out, errOut, err := runList(t, port, user)
			// The keeper may still be cutting what it just got (it builds
			// a cut outside its lock, while states keep coming): vallum
			// list then says to run again, as a user would.
			for try := 0; try < 3 && err != nil && strings.Contains(err.Error(), "run again"); try++ {
				out, errOut, err = runList(t, port, user)
			}
			if err != nil {
				t.Fatalf("vallum list: %v\n%s", err, errOut)
			}
			// A reporter may not use a sync marker: it is told how the end
			// of the list was found, and that it may be early.
			reporter := user == broker.RoleReporter
			if warned := strings.Contains(errOut, "may not use vallum/sync/"); warned != reporter {
				t.Errorf("%s: warning about the marker = %v:\n%s", user, warned, errOut)
			}
			if reporter {
				return
			}
			if want := fmt.Sprintf("\n%d active bans\n", n); !strings.HasSuffix(out, want) {
				t.Fatalf("vallum list ends with %q, want %q", out[max(0, len(out)-60):], want)
			}
			if got := strings.Count(out, "\n10."); got != n {
				t.Errorf("vallum list printed %d ban lines, want %d", got, n)
			}
		})
	}
}

// A login that may subscribe to its marker but not publish it (the broker
// then drops the connection) makes vallum list fail, not print a short or
// empty list.
func TestListFailsWithoutTheEndOfTheList(t *testing.T) {
	port := listBroker(t)
	retainBans(t, port, 1000)
	out, errOut, err := runList(t, port, "halfsync")
	if err == nil || strings.Contains(out, "active bans") {
		t.Fatalf("vallum list without its marker = %v, want an error and no list:\n%s%s", err, out, errOut)
	}
}

// TestListFailureMessages: each way a read ends short says what happened,
// with the right wait and the bans read so far.
func TestListFailureMessages(t *testing.T) {
	r := &stateReader{root: "bl", got: map[netip.Prefix]wire.State{netip.MustParsePrefix("192.0.2.1/32"): {}}}
	tests := []struct {
		stop error
		want string
	}{
		{retained.TimedOut, "list bl: not complete after 10m0s (1 bans so far): the broker is too slow or too loaded"},
		{retained.Closed, "list bl: the broker closed the connection after 1 bans"},
		{retained.Empty, "list bl: no ban came in 1m0s, and this login may not use a sync marker to tell an empty list from a slow broker: use a host or admin login"},
		{retained.Stalled, "list bl: the broker sent nothing for 1m0s and not the end of the list (1 bans so far)"},
	}
	for _, tt := range tests {
		if got := r.failed(tt.stop, listTimes).Error(); got != tt.want {
			t.Errorf("failed(%v) = %q, want %q", tt.stop, got, tt.want)
		}
	}
}

// vallum list shows a ban's escalation count once the keeper's cut has
// folded its per-ban state into a chunk: the count travels in the chunk.
func TestListCountFromChunks(t *testing.T) {
	port := listBroker(t)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://127.0.0.1:" + port).
		SetClientID("list-test-count").SetUsername("admin").SetPassword("pw-admin"))
	if err := wait(c.Connect(), "connect"); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(250)
	now := time.Now()
	topic := wire.StateTopic("blacklist", netip.MustParsePrefix("192.0.2.7/32"))
	st := wire.EncodeState(wire.State{At: now, Expires: now.Add(time.Hour), Reason: "sshd", Count: 3})
	if err := wait(c.Publish(topic, 1, true, st), "publish"); err != nil {
		t.Fatal(err)
	}
	retainBans(t, port, 10_500) // more than the keeper's 10,000 changes: it cuts
	gone := make(chan struct{}, 1)
	deadline := time.Now().Add(40 * time.Second)
	for {
		// A fresh subscription gets the retained state, if the broker
		// still holds it; the keeper deletes it 10 s after the cut.
		held := make(chan bool, 1)
		tok := c.Subscribe(topic, 0, func(_ mqtt.Client, m mqtt.Message) {
			select {
			case held <- len(m.Payload()) > 0:
			default:
			}
		})
		if err := wait(tok, "subscribe"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-held:
		case <-time.After(time.Second): // a retained message comes in milliseconds
			gone <- struct{}{}
		}
		wait(c.Unsubscribe(topic), "unsubscribe")
		if len(gone) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the per-ban state is still retained 40 s after the cut")
		}
		time.Sleep(500 * time.Millisecond)
	}
	out, errOut, err := runList(t, port, broker.RoleAdmin)
	if err != nil {
		t.Fatalf("vallum list: %v\n%s", err, errOut)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "192.0.2.7 ") {
			if f := strings.Fields(line); f[len(f)-1] != "3" {
				t.Errorf("vallum list: %q, want count 3", line)
			}
			return
		}
	}
	t.Fatalf("192.0.2.7 not listed:\n%s", out[:min(len(out), 500)])
}
