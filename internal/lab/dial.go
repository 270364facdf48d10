package lab

import (
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/vishvananda/netns"
)

// dialIn opens a TCP connection from inside the namespace ns. A socket
// keeps the namespace it was made in, so the thread switches in only for
// the dial and back at once; if it cannot switch back it stays locked and
// dies with its goroutine rather than serve others in the wrong namespace.
func dialIn(ns, addr string) (net.Conn, error) {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	c, dialErr := net.DialTimeout("tcp", addr, 5*time.Second)
	if err := netns.Set(orig); err != nil {
		return nil, fmt.Errorf("cannot return to the original namespace: %w", err) // thread stays locked
	}
	runtime.UnlockOSThread()
	return c, dialErr
}

// MQTT returns a paho client (not yet connected) for the broker on port of
// the host's loopback, dialled from inside the host's namespace.
func (h *Host) MQTT(port int, o *mqtt.ClientOptions) mqtt.Client {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	o.AddBroker("tcp://" + addr)
	o.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
		return dialIn(h.NS, addr)
	})
	return mqtt.NewClient(o)
}

// Connect is MQTT followed by a connect that must succeed within 10 s.
func (h *Host) Connect(port int, o *mqtt.ClientOptions) (mqtt.Client, error) {
	c := h.MQTT(port, o)
	t := c.Connect()
	if !t.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect to %s:%d: timed out", h.Name, port)
	}
	return c, t.Error()
}
