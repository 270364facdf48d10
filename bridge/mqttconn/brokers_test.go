package mqttconn

import (
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func TestBrokerOrderStartsAfterTheCurrent(t *testing.T) {
	var urls []*url.URL
	for _, s := range []string{"tcp://n1:1883", "tcp://n2:1883", "tcp://n3:1883"} {
		u, _ := url.Parse(s)
		urls = append(urls, u)
	}
	l := NewBrokers(urls, nil)
	for cur, want := range map[int]string{-1: "n1 n2 n3", 0: "n2 n3 n1", 1: "n3 n1 n2", 2: "n1 n2 n3"} {
		l.cur = cur
		var got []string
		for _, u := range l.Order() {
			got = append(got, u.Hostname())
		}
		if strings.Join(got, " ") != want {
			t.Errorf("connected to %d: order %v, want %s", cur, got, want)
		}
	}
}

// wrapped marks the connections a Brokers' wrap made.
type wrapped struct {
	net.Conn
	uri string
}

// Open notes the broker and the (wrapped) connection in use, and Drop
// ends that connection only: one replaced since is left alone.
func TestOpenCurrentDrop(t *testing.T) {
	var urls []*url.URL
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		u, _ := url.Parse("tcp://user:secret@" + ln.Addr().String())
		urls = append(urls, u)
	}
	l := NewBrokers(urls, func(c net.Conn, uri *url.URL) net.Conn { return &wrapped{c, uri.String()} })
	if name, c := l.Current(); name != urls[0].Redacted() || c != nil {
		t.Errorf("before any connection: Current() = %q, %v; want the first broker and no connection", name, c)
	}
	o := *mqtt.NewClientOptions()
	first, err := l.Open(urls[0], o)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := l.Open(urls[1], o)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	name, c := l.Current()
	if w, ok := c.(*wrapped); !ok || c != second || w.uri != urls[1].String() || name != urls[1].Redacted() || strings.Contains(name, "secret") {
		t.Fatalf("Current() = %q, %v; want the second broker, redacted, and its wrapped connection", name, c)
	}
	if got := l.Order(); got[0] != urls[0] {
		t.Errorf("Order() starts with %s, want the broker after the current one", got[0].Redacted())
	}

	l.Drop(first) // no longer in use: left alone
	first.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := first.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("read of a connection dropped after it was replaced = %v, want it still open (a timeout)", err)
	}
	l.Drop(second)
	done := make(chan error, 1)
	go func() {
		_, err := second.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Errorf("read of the dropped connection = %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the dropped connection still blocks its reader")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
