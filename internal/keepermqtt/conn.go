package keepermqtt

import (
	"net"
	"net/url"
	"sync/atomic"
)

// sessConn is one connection to a broker. It reads the CONNACK as paho
// reads it, for its session-present flag: paho hands that flag out for the
// first connection only, and a keeper must know after every reconnection
// whether the broker still holds its session (and so its subscriptions and
// the events queued on them) or lost it (and so, likely, the lists too).
type sessConn struct {
	net.Conn
	broker string // redacted URL, for the log

	seen    int     // bytes of the CONNACK read so far
	hdr     [4]byte // fixed header, remaining length, flags, return code
	present atomic.Bool
}

func (c *sessConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.seen < len(c.hdr) && n > 0 { // paho's reader goroutine only: no lock
		k := copy(c.hdr[c.seen:], p[:n])
		c.seen += k
		if c.seen == len(c.hdr) {
			// 0x20: CONNACK, 2 bytes long; bit 0 of the flags: session present.
			c.present.Store(c.hdr[0] == 0x20 && c.hdr[1] == 2 && c.hdr[2]&1 == 1)
		}
	}
	return n, err
}

// sessionPresent reports whether the broker kept the session.
func (c *sessConn) sessionPresent() bool { return c.present.Load() }

// newSessConn wraps each connection the brokers open (mqttconn.Brokers).
func newSessConn(c net.Conn, uri *url.URL) net.Conn {
	return &sessConn{Conn: c, broker: uri.Redacted()}
}
