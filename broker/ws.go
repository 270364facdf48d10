package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	ln        net.Listener
	srv       *http.Server
	establish listeners.EstablishFn
	log       *slog.Logger
	closeOnce sync.Once
}

func newWS(id, addr string) *wsListener { return &wsListener{id: id, addr: addr} }

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
	// header): a web page a local user visits must not reach a broker
	// that trusts loopback clients.
	up := &websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	l.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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

func (ws *wsConn) Write(p []byte) (int, error) {
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
