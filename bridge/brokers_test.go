package bridge

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/vallum/vallum/internal/wire"
)

func TestOptionsBrokers(t *testing.T) {
	o := Options{Lists: []List{{Root: "bl"}}, ClientID: "x", Broker: "tcp://a:1883", Brokers: []string{"tcp://b:1883", "no scheme"}}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), `"no scheme"`) {
		t.Errorf("Validate with a bad second broker = %v, want it named", err)
	}
	o.Brokers = o.Brokers[:1]
	urls, err := o.brokerURLs()
	if err != nil || len(urls) != 2 || urls[0].Host != "a:1883" || urls[1].Host != "b:1883" {
		t.Errorf("brokerURLs = %v, %v; want a then b", urls, err)
	}
}

// bansFrom publishes a retained ban of p on the broker at url.
func retainBan(t *testing.T, url, p string) {
	t.Helper()
	publish(t, publisher(t, url), "bl/ban/"+p, true, string(wire.EncodeState(wire.State{At: time.Now()})))
}

func TestFailoverWhenTheBrokerGoesDown(t *testing.T) {
	_, direct := startBroker(t, nil)
	urlA, kill := startProxy(t, direct)
	_, urlB := startBroker(t, nil)
	retainBan(t, urlB, "203.0.113.2")
	f := newFake()
	r := startBridge(t, "", f, func(o *Options) { o.Brokers = []string{urlA, urlB} })
	r.waitSynced(t, 1)
	if got := r.b.brokerName(); got != urlA {
		t.Fatalf("connected to %s, want the first broker %s", got, urlA)
	}
	kill() // the node dies; B has a ban A never had
	r.waitSynced(t, 2)
	wantMembers(t, f, "bl", "203.0.113.2")
	publish(t, publisher(t, urlB), "bl/add", false, "203.0.113.3")
	wantMembers(t, f, "bl", "203.0.113.2", "203.0.113.3")
}

func TestFirstBrokerDownAtStart(t *testing.T) {
	dead := closedPort(t)
	_, urlB := startBroker(t, nil)
	retainBan(t, urlB, "203.0.113.4")
	f := newFake()
	r := startBridge(t, dead, f, func(o *Options) { o.Brokers = []string{urlB} })
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "203.0.113.4")
}

func TestStuckBrokerSyncDeadlineFailsOver(t *testing.T) {
	stuck := startStuckBroker(t)
	_, urlB := startBroker(t, nil)
	retainBan(t, urlB, "203.0.113.5")
	f := newFake()
	r := startBridge(t, stuck.url, f, func(o *Options) {
		o.Brokers = []string{urlB}
		o.SyncTimeout = 300 * time.Millisecond
	})
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "203.0.113.5")
	if stuck.conns.Load() == 0 {
		t.Error("the bridge never tried the stuck broker first")
	}
	if got := r.b.brokerName(); got != urlB {
		t.Errorf("connected to %s, want %s", got, urlB)
	}
}

// A first broker that takes connections and never answers them (a NATS
// node just restarted did so for a minute) costs one connect timeout.
func TestSilentFirstBrokerAtStart(t *testing.T) {
	silent := startStuck(t, true)
	_, urlB := startBroker(t, nil)
	retainBan(t, urlB, "203.0.113.6")
	f := newFake()
	r := startBridge(t, silent.url, f, func(o *Options) {
		o.Brokers = []string{urlB}
		o.ConnectTimeout = 300 * time.Millisecond
	})
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "203.0.113.6")
}

// With one broker that never answers a sync, the bridge keeps trying
// afresh, once per sync timeout, and never reports itself synced.
func TestStuckSingleBrokerReconnects(t *testing.T) {
	stuck := startStuckBroker(t)
	r := startBridge(t, stuck.url, newFake(), func(o *Options) { o.SyncTimeout = 200 * time.Millisecond })
	eventually(t, func() bool { return stuck.conns.Load() >= 3 }, "three connections to the stuck broker")
	if r.b.stats.Subscribed.Load() || r.b.stats.Syncs.Load() != 0 {
		t.Error("bridge says it synced with a broker that sent nothing")
	}
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "tcp://" + addr
}

// stuckBroker accepts MQTT connections and acknowledges everything, but
// delivers nothing: what a NATS node just after a restart did to its first
// MQTT client for minutes.
type stuckBroker struct {
	url    string
	conns  atomic.Int64
	silent bool // not even a CONNACK
}

func startStuckBroker(t *testing.T) *stuckBroker {
	t.Helper()
	return startStuck(t, false)
}

func startStuck(t *testing.T, silent bool) *stuckBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &stuckBroker{url: "tcp://" + ln.Addr().String(), silent: silent}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go s.serve(c)
		}
	}()
	return s
}

func (s *stuckBroker) serve(c net.Conn) {
	defer c.Close()
	for {
		p, err := packets.ReadPacket(c)
		if err != nil {
			return
		}
		if s.silent {
			continue
		}
		var reply packets.ControlPacket
		switch p := p.(type) {
		case *packets.ConnectPacket:
			reply = packets.NewControlPacket(packets.Connack)
		case *packets.SubscribePacket:
			ack := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
			ack.MessageID, ack.ReturnCodes = p.MessageID, p.Qoss
			reply = ack
		case *packets.PublishPacket:
			if p.Qos == 1 {
				ack := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
				ack.MessageID = p.MessageID
				reply = ack
			}
		case *packets.PingreqPacket:
			reply = packets.NewControlPacket(packets.Pingresp)
		case *packets.DisconnectPacket:
			return
		}
		if reply != nil && reply.Write(c) != nil {
			return
		}
	}
}

// startProxy forwards TCP to the broker at target; kill closes it and
// every connection through it at once, as a node that dies.
func startProxy(t *testing.T, target string) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", strings.TrimPrefix(target, "tcp://"))
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	kill := func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(kill)
	return "tcp://" + ln.Addr().String(), kill
}

// With ConfirmSync, the first sync of a connection is followed by one more.
func TestConfirmSync(t *testing.T) {
	_, url := startBroker(t, nil)
	r := startBridge(t, url, newFake(), func(o *Options) { o.ConfirmSync = 100 * time.Millisecond })
	r.waitSynced(t, 2)
	time.Sleep(300 * time.Millisecond)
	if n, re := r.b.stats.Syncs.Load(), r.b.stats.Reconnects.Load(); n != 2 || re != 0 {
		t.Errorf("%d syncs and %d reconnects, want 2 syncs on one connection", n, re)
	}
}
