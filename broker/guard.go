package broker

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// connGuard stands between a listener and mochi until a connection has
// sent its whole CONNECT. mochi allocates a client (two 64 KiB buffers and
// an outbound queue) for every accepted connection, waits for CONNECT
// without a deadline and allocates whatever length the CONNECT announces
// (up to the 4 MiB packet limit): half-open connections cost the hub
// without any login. The guard reads the CONNECT itself, with a deadline
// and a small size limit, counts connections per source address, and only
// then hands mochi the connection.
type connGuard struct {
	lim Limits
	ref *refusals

	mu      sync.Mutex
	perAddr map[string]int
	pending map[net.Conn]struct{} // still before CONNECT: closed on shutdown
}

func newConnGuard(lim Limits, ref *refusals) *connGuard {
	return &connGuard{lim: lim, ref: ref, perAddr: map[string]int{}, pending: map[net.Conn]struct{}{}}
}

// wrap returns the establish function a listener calls for each accepted
// connection. It returns nil for a refused connection: the refusal is
// logged here, once, and mochi's listener would log it again without a
// message.
func (g *connGuard) wrap(next listeners.EstablishFn) listeners.EstablishFn {
	return func(id string, c net.Conn) error {
		addr := remoteHost(c)
		if !g.acquire(addr) {
			g.ref.refuse(refConnsPerAddr, "too many connections from one address", "remote", c.RemoteAddr().String(), "limit", g.lim.MaxConnsPerAddr)
			_ = c.Close()
			return nil
		}
		defer g.release(addr)
		first, err := g.readConnect(c)
		if err != nil {
			var r *connRefusal
			if errors.As(err, &r) {
				g.ref.refuse(r.reason, r.msg, "remote", c.RemoteAddr().String())
			}
			_ = c.Close()
			return nil
		}
		// The password check (bcrypt: seconds on a small router) must not
		// run into this deadline; mochi sets its own (keepalive) after it.
		_ = c.SetDeadline(time.Time{})
		sc := &stallConn{Conn: c, stall: g.lim.WriteStall, stalled: func() {
			g.ref.refuse(refWriteStall, "closed a connection that read nothing for write_stall", "remote", c.RemoteAddr().String(), "write_stall", g.lim.WriteStall)
		}}
		_ = next(id, &replayConn{Conn: sc, r: io.MultiReader(bytes.NewReader(first), c)})
		return nil
	}
}

func (g *connGuard) acquire(addr string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perAddr[addr] >= g.lim.MaxConnsPerAddr {
		return false
	}
	g.perAddr[addr]++
	return true
}

func (g *connGuard) release(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perAddr[addr]--; g.perAddr[addr] <= 0 {
		delete(g.perAddr, addr)
	}
}

type connRefusal struct{ reason, msg string }

func (r *connRefusal) Error() string { return r.msg }

// readConnect reads the first packet, which must be a CONNECT of at most
// MaxConnectSize bytes, within ConnectTimeout, and returns its bytes.
func (g *connGuard) readConnect(c net.Conn) ([]byte, error) {
	g.mu.Lock()
	g.pending[c] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.pending, c)
		g.mu.Unlock()
	}()
	_ = c.SetDeadline(time.Now().Add(g.lim.ConnectTimeout))
	// The type byte, then the remaining length: 7 bits a byte, at most 4.
	pk := make([]byte, 0, 5)
	n, shift := 0, 0
	for len(pk) < 5 && (len(pk) < 2 || pk[len(pk)-1]&0x80 != 0) {
		b := []byte{0}
		if _, err := io.ReadFull(c, b); err != nil {
			return nil, g.timeout(err)
		}
		if len(pk) > 0 {
			n += int(b[0]&0x7f) << shift
			shift += 7
		}
		pk = append(pk, b[0])
	}
	switch {
	case pk[0]>>4 != 1 || pk[len(pk)-1]&0x80 != 0:
		return nil, &connRefusal{refNotConnect, "the first packet is no CONNECT"}
	case len(pk)+n > g.lim.MaxConnectSize:
		return nil, &connRefusal{refConnectSize, "CONNECT larger than allowed before login (" + strconv.Itoa(len(pk)+n) + " bytes)"}
	}
	pk = append(pk, make([]byte, n)...)
	if _, err := io.ReadFull(c, pk[len(pk)-n:]); err != nil {
		return nil, g.timeout(err)
	}
	return pk, nil
}

// timeout turns a deadline error into the refusal it stands for; any
// other error (the client went away) is no refusal.
func (g *connGuard) timeout(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &connRefusal{refConnectTime, "no CONNECT within " + g.lim.ConnectTimeout.String()}
	}
	return err
}

// closePending closes the connections that have not sent CONNECT yet:
// mochi knows nothing of them, so its shutdown would not.
func (g *connGuard) closePending() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.pending {
		_ = c.Close()
	}
}

func remoteHost(c net.Conn) string {
	a := c.RemoteAddr()
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// replayConn gives mochi the CONNECT the guard read, then the connection.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// guarded is a mochi listener whose connections pass the guard first.
type guarded struct {
	listeners.Listener
	g *connGuard
}

func (l *guarded) Serve(establish listeners.EstablishFn) { l.Listener.Serve(l.g.wrap(establish)) }

func (l *guarded) Close(closeClients listeners.CloseFn) {
	l.Listener.Close(closeClients)
	l.g.closePending()
}
