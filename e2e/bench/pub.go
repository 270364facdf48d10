package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/bridge/mqttconn"
	"github.com/vallum/vallum/internal/lab"
)

// addrs hands out distinct IPv4 addresses from 100.64.0.0/10 (4M of them),
// so that every phase adds entries no earlier phase added. They are only
// set entries: no packet is ever sent to them.
type addrs struct{ next atomic.Uint32 }

func (a *addrs) take(n int) []netip.Addr {
	first := a.next.Add(uint32(n)) - uint32(n)
	out := make([]netip.Addr, n)
	for i := range out {
		v := 100<<24 | 64<<16 + first + uint32(i)
		out[i] = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return out
}

// lines joins addresses into one payload, one per line, with no newline
// after the last: one address is then what vallumd's users publish, and
// vallumd refuses a trailing newline.
func lines(as []netip.Addr) []byte {
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(a.String())
	}
	return []byte(b.String())
}

// connect opens a publisher on the host's broker. mosquitto_pub is not
// used: it keeps 20 QoS 1 messages in flight and stops early past 65,535.
func connect(h *lab.Host, port int, id string) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(false).SetWriteTimeout(30 * time.Second).SetKeepAlive(60 * time.Second)
	return dial(h, port, o)
}

// dial connects a paho client to the host's broker over vallum's buffered
// connection (bridge/mqttconn): the benchmark's own clients share the two
// cores with what they measure, so they should cost as little as vallum's.
func dial(h *lab.Host, port int, o *mqtt.ClientOptions) (mqtt.Client, error) {
	o.AddBroker("tcp://127.0.0.1:" + strconv.Itoa(port))
	o.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
		c, err := h.Dial(port)
		if err != nil {
			return nil, err
		}
		return mqttconn.Wrap(c), nil
	})
	c := mqtt.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect to %s:%d: %v", h.Name, port, t.Error())
	}
	return c, nil
}

// publishAll publishes n messages at QoS 1 with up to window in flight and
// returns once the broker has acknowledged them all, or at the deadline.
func publishAll(c mqtt.Client, n, window int, deadline time.Time, msg func(i int) (string, []byte, bool)) error {
	toks := make(chan mqtt.Token, window)
	done := make(chan error, 1)
	go func() {
		var err error
		for t := range toks {
			if err != nil {
				continue // drain, so that the sender never blocks
			}
			if !t.WaitTimeout(time.Until(deadline)) {
				err = errors.New("publish: no PUBACK before the deadline")
			} else if t.Error() != nil {
				err = fmt.Errorf("publish: %w", t.Error())
			}
		}
		done <- err
	}()
	var err error
	for i := 0; i < n; i++ {
		if time.Now().After(deadline) {
			err = fmt.Errorf("publish: deadline after %d of %d messages", i, n)
			break
		}
		topic, payload, retained := msg(i)
		toks <- c.Publish(topic, 1, retained, payload)
	}
	close(toks)
	return errors.Join(err, <-done)
}
