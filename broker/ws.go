package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over WebSocket. mochi's own listener binds only
// in Serve, so a port in use would surface after New returned; this one
// binds in Init.
type wsListener struct {
	id, addr  string
	hosts     []string // names a client may give as Host, besides addresses
	ref       *refusals
	ln        net.Listener
	srv       *http.Server
	establish listeners.EstablishFn
	log       *slog.Logger
	closeOnce sync.Once
}

func newWS(id, addr string, hosts []string, ref *refusals) *wsListener {
	l := &wsListener{id: id, addr: addr, hosts: append([]string{"localhost"}, hosts...), ref: ref}
	if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && net.ParseIP(h) == nil {
		l.hosts = append(l.hosts, h) // the name it listens on
	}
	if h, err := os.Hostname(); err == nil {
		l.hosts = append(l.hosts, h)
	}
	return l
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *wsListener) Init(log *slog.Logger) error {
	ln, err := net.Listen(listenNetwork(l.addr), l.addr)
	if err != nil {
		return err
	}
	l.ln, l.log = ln, log
	// CheckOrigin is left to gorilla's default (same origin, or no Origin
	// header), and the Host must name this listener: a page whose name
	// was rebound to this address passes the same-origin check, not this.
	up := &websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	l.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !l.hostAllowed(r) {
				l.ref.refuse(refWSHost, "WebSocket Host is not this listener's name or address (DNS rebinding?)",
					"host", clip(r.Host), "origin", clip(r.Header.Get("Origin")), "remote", r.RemoteAddr)
				http.Error(w, "Host not allowed", http.StatusForbidden)
				return
			}
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			if err := l.establish(l.id, &wsConn{Conn: c.UnderlyingConn(), c: c}); err != nil {
				l.log.Debug("websocket client ended", "err", err)
			}
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	return nil
}

// hostAllowed reports whether the request's Host names this listener: the
// address the connection came in on (or any loopback address on a
// loopback listener), "localhost" on loopback, the name the listener was
// given, the machine's host name or a configured name; with this port, or
// none (a browser leaves out port 80).
func (l *wsListener) hostAllowed(r *http.Request) bool {
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, ""
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	la, ok := local.(*net.TCPAddr)
	if !ok {
		return false
	}
	if port != "" && port != strconv.Itoa(la.Port) {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.Equal(la.IP) || ip.IsLoopback() && la.IP.IsLoopback()
	}
	for _, h := range l.hosts {
		if strings.EqualFold(host, h) && (h != "localhost" || la.IP.IsLoopback()) {
			return true
		}
	}
	return false
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "err", err)
	}
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		closeClients(l.id) // hijacked connections are not closed by Shutdown
		_ = l.srv.Shutdown(ctx)
	})
}

// wsConn presents a WebSocket as the byte stream mochi reads packets from.
type wsConn struct {
	net.Conn
	c *websocket.Conn
	r io.Reader // current message, nil between messages
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("websocket: mqtt needs binary messages")
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r, err = nil, nil
			if n == 0 {
				continue
			}
		}
		return n, err
	}
}

// SetWriteDeadline goes to the WebSocket: it sets the connection's own
// deadline at each write (none by default), which would undo one set on
// the connection under it (stallConn).
func (ws *wsConn) SetWriteDeadline(t time.Time) error { return ws.c.SetWriteDeadline(t) }

func (ws *wsConn) Write(p []byte) (int, error) {
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
