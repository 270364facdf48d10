package keepermqtt

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A broker that stops sending to the keeper while the connection stays up
// (mosquitto 2.0.11 with its window miscounted, probe.go) does not stop it
// for good: the keeper notices that its probe does not come back,
// reconnects, and gets what the broker held from its session. Without the
// probe, the keeper waited for input forever and lost the events.
func TestStalledBrokerReconnects(t *testing.T) {
	srv, addr, _ := startBroker(t, "127.0.0.1:0")
	p := newStallProxy(t, addr, "bl/add", 5)
	k, _ := runAdapterSync(t, p.addr(), time.Second)
	eventually(t, "Settle", func() bool { _, s, _, _ := k.snapshot(); return s == 1 })
	var want []string
	for i := range 10 {
		payload := fmt.Sprintf("203.0.113.%d", i)
		publish(t, srv, "bl/add", payload, false)
		want = append(want, "bl/add="+payload)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, live, _ := k.snapshot()
		if !slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(live, w) }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the keeper has %v, want all of %v (connections: %d)", live, want, p.conns.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := p.conns.Load(); n < 2 {
		t.Errorf("%d connections, want a reconnection", n)
	}
}

// stallProxy forwards MQTT connections to a broker. On its first
// connection, once it has passed after PUBLISH packets on topic to the
// client, it passes no more PUBLISH packets to it (all else still goes
// both ways: the broker acknowledges, answers pings): a broker that
// stopped sending. Later connections pass everything.
type stallProxy struct {
	ln    net.Listener
	to    string
	topic string
	after int
	conns atomic.Int32
	wg    sync.WaitGroup
}

func newStallProxy(t *testing.T, to, topic string, after int) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, to: to, topic: topic, after: after}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) accept() {
	defer p.wg.Done()
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		open = append(open, c, b)
		first := p.conns.Add(1) == 1
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(b, c); b.Close() }()
		go func() { defer p.wg.Done(); p.toClient(c, b, first); c.Close() }()
	}
}

// toClient copies the broker's packets to the client, one at a time.
func (p *stallProxy) toClient(c, b net.Conn, stall bool) {
	r := bufio.NewReader(b)
	passed := 0
	for {
		pk, err := readPacket(r)
		if err != nil {
			return
		}
		if pk[0]>>4 == 3 && stall { // PUBLISH
			if passed >= p.after {
				continue
			}
			if publishTopic(pk) == p.topic {
				passed++
			}
		}
		if _, err := c.Write(pk); err != nil {
			return
		}
	}
}

// readPacket reads one MQTT control packet whole: the fixed header, its
// remaining length (a variable byte integer) and the rest.
func readPacket(r *bufio.Reader) ([]byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	pk := []byte{h}
	n, shift := 0, 0
	for {
		d, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		pk = append(pk, d)
		n |= int(d&0x7f) << shift
		if d&0x80 == 0 {
			break
		}
		shift += 7
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append(pk, body...), nil
}

// publishTopic returns the topic of a PUBLISH packet read by readPacket.
func publishTopic(pk []byte) string {
	i := 1
	for pk[i]&0x80 != 0 {
		i++
	}
	i++
	n := int(pk[i])<<8 | int(pk[i+1])
	return string(pk[i+2 : i+2+n])
}
