package lab

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// dialIn opens a TCP connection from inside the host's namespace: a socket
// keeps the namespace it was made in.
func (h *Host) dialIn(addr string) (net.Conn, error) {
	var c net.Conn
	err := h.inside(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	return c, err
}

// MQTT returns a paho client (not yet connected) for the broker on port of
// the host's loopback, dialled from inside the host's namespace.
func (h *Host) MQTT(port int, o *mqtt.ClientOptions) mqtt.Client {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	o.AddBroker("tcp://" + addr)
	o.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
		return h.dialIn(addr)
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
