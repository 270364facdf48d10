package retained

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/broker"
)

// startBroker runs the embedded broker on loopback with an admin login
// (password "pw") and returns its URL.
func startBroker(t *testing.T) string {
	t.Helper()
	hash, err := broker.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{Listeners: []broker.Listener{{Kind: broker.KindTCP, Addr: "127.0.0.1:0"}},
		ExtraUsers: []broker.User{{Name: "admin", Role: broker.RoleAdmin, Password: hash}}, Lists: []string{"bl"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b.Addrs()[0]
}

func client(t *testing.T, url, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).
		SetUsername("admin").SetPassword("pw").SetAutoReconnect(false))
	if err := wait(c.Connect()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(250) })
	return c
}

// TestRead: with a marker the read ends at it, holding every retained
// message; without one it ends at a pause; an empty filter without a marker
// is told apart (Empty), and with one is simply empty.
func TestRead(t *testing.T) {
	url := startBroker(t)
	pub := client(t, url, "pub")
	const n = 500
	for i := range n {
		if err := wait(pub.Publish(fmt.Sprintf("bl/ban/10.0.%d.%d", i/256, i%256), 1, true, `{"at":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	tm := Timing{Stall: 5 * time.Second, Quiet: 300 * time.Millisecond, Limit: 30 * time.Second}
	tests := []struct {
		name, filter, marker string
		want                 int
		stop                 error // nil: to the end
	}{
		{"marker", "bl/ban/#", "vallum/sync/r1", n, nil},
		{"pause", "bl/ban/#", "", n, nil},
		{"empty with marker", "other/ban/#", "vallum/sync/r3", 0, nil},
		{"empty without marker", "other/ban/#", "", 0, Empty},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			got := map[string]bool{}
			c := client(t, url, fmt.Sprintf("r%d", i+1))
			tm := tm
			if tt.stop == Empty {
				tm.Stall = 300 * time.Millisecond
			}
			rd, err := Subscribe(c, tt.filter, 0, tt.marker, func(_ mqtt.Client, m mqtt.Message) {
				mu.Lock()
				got[m.Topic()] = true
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			if rd.Marked != (tt.marker != "") {
				t.Errorf("Marked = %v with marker %q", rd.Marked, tt.marker)
			}
			err = rd.Wait(tm)
			if !errors.Is(err, tt.stop) {
				t.Fatalf("Wait = %v, want %v", err, tt.stop)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != tt.want {
				t.Errorf("read %d messages, want %d", len(got), tt.want)
			}
		})
	}
}

// TestReadClosed: a connection lost before the end is an error, never a
// short read.
func TestReadClosed(t *testing.T) {
	url := startBroker(t)
	c := client(t, url, "r-closed")
	rd, err := Subscribe(c, "bl/ban/#", 0, "", func(mqtt.Client, mqtt.Message) {})
	if err != nil {
		t.Fatal(err)
	}
	c.Disconnect(0)
	err = rd.Wait(Timing{Stall: time.Minute, Quiet: time.Minute, Limit: time.Minute})
	if !errors.Is(err, Closed) {
		t.Fatalf("Wait after a disconnect = %v, want Closed", err)
	}
}
