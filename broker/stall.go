package broker

import (
	"errors"
	"net"
	"sync"
	"time"
)

// stallConn closes a connection whose writes make no progress for stall.
// mochi writes to a client holding that client's lock, with no deadline
// (Client.WritePacket, v2.7.9), and every publish to the client takes the
// same lock for a packet id (NextPacketID): a subscriber that stopped
// reading, once its socket was full, hung every publisher whose messages
// went to it, and inside the hub the keeper's own publishes, for as long
// as it kept its connection open (TestStuckSubscriberDoesNotStallOthers).
// A slow link still makes progress: the deadline is renewed while bytes
// leave (over WebSocket, whose writes report no partial progress, each
// message must leave within stall: a 94 KB chunk needs 75 kbit/s). mochi ignores a failed write, so the connection is closed here:
// its read loop then ends the client, and the host reconnects and syncs.
type stallConn struct {
	net.Conn
	stall   time.Duration
	stalled func() // logs and counts the close, once
	once    sync.Once
}

func (c *stallConn) Write(p []byte) (int, error) {
	n := 0
	for {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.stall))
		m, err := c.Conn.Write(p[n:])
		n += m
		var ne net.Error // os.ErrDeadlineExceeded, or gorilla's write timeout
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			return n, err
		}
		if m == 0 { // nothing left in stall: the peer reads nothing
			c.once.Do(func() {
				c.stalled()
				_ = c.Conn.Close()
			})
			return n, err
		}
	}
}
