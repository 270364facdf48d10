package broker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// Listener kinds.
const (
	KindTCP = "tcp"
	KindTLS = "tls"
	KindWS  = "ws"
)

// Listener is one address the broker accepts clients on.
type Listener struct {
	Kind string // KindTCP, KindTLS or KindWS
	Addr string // host:port; port 0 picks a free port
}

func (l Listener) String() string { return l.Kind + "://" + l.Addr }

// schemes maps the URL schemes --listen accepts to listener kinds.
var schemes = map[string]string{
	"tcp": KindTCP, "mqtt": KindTCP,
	"tls": KindTLS, "ssl": KindTLS, "mqtts": KindTLS,
	"ws": KindWS,
}

// ParseListen parses a --listen value: tcp://HOST:PORT, tls://HOST:PORT,
// ws://HOST:PORT, or a bare HOST:PORT meaning tcp. An empty host means
// every address.
func ParseListen(s string) (Listener, error) {
	kind, addr := KindTCP, s
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		k, known := schemes[strings.ToLower(scheme)]
		if !known {
			return Listener{}, fmt.Errorf("listen %q: unknown scheme %q (want tcp, tls or ws)", s, scheme)
		}
		kind, addr = k, rest
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Listener{}, fmt.Errorf("listen %q: %w", s, err)
	}
	if port == "" {
		return Listener{}, fmt.Errorf("listen %q: missing port", s)
	}
	return Listener{Kind: kind, Addr: net.JoinHostPort(host, port)}, nil
}

// loopback reports whether l accepts only local clients.
func (l Listener) loopback() bool {
	host, _, err := net.SplitHostPort(l.Addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// tlsConfig loads the server certificate and, when clientCA is set,
// requires clients to present a certificate signed by it.
func tlsConfig(cert, key, clientCA string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("load tls certificate %s: %w", cert, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCA == "" {
		return c, nil
	}
	pem, err := os.ReadFile(clientCA)
	if err != nil {
		return nil, fmt.Errorf("read tls client ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls client ca %s: no PEM certificate found", clientCA)
	}
	c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	return c, nil
}

// newListener returns the mochi listener for l; it binds in Init, which
// mochi's AddListener calls.
func newListener(id string, l Listener, tc *tls.Config, wsHosts []string, ref *refusals) listeners.Listener {
	switch l.Kind {
	case KindTLS:
		return &tcpListener{id: id, addr: l.Addr, tc: tc}
	case KindWS:
		return newWS(id, l.Addr, wsHosts, ref)
	}
	return &tcpListener{id: id, addr: l.Addr}
}

// listenNetwork is the network to bind addr on: 0.0.0.0 (or any IPv4
// address) is IPv4 only and [::] IPv6 only, as a user who typed them means
// (Go's "tcp" would bind [::] for 0.0.0.0, so IPv6 too); an empty host or a
// name binds both.
func listenNetwork(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return "tcp"
	case ip.Is4() || ip.Is4In6():
		return "tcp4"
	}
	return "tcp6"
}

// tcpListener is mochi's TCP and TLS listener (listeners.Net) on a socket
// bound by listenNetwork's rule; mochi's listeners.TCP binds "tcp" always.
type tcpListener struct {
	id, addr       string
	tc             *tls.Config // nil: plain TCP
	*listeners.Net             // once bound
}

func (l *tcpListener) ID() string       { return l.id }
func (l *tcpListener) Protocol() string { return "tcp" }

func (l *tcpListener) Address() string {
	if l.Net != nil {
		return l.Net.Address()
	}
	return l.addr
}

func (l *tcpListener) Init(log *slog.Logger) error {
	ln, err := net.Listen(listenNetwork(l.addr), l.addr)
	if err != nil {
		return err
	}
	if l.tc != nil {
		ln = tls.NewListener(ln, l.tc)
	}
	l.Net = listeners.NewNet(l.id, ln)
	return l.Net.Init(log)
}

func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	if l.Net != nil {
		l.Net.Close(closeClients)
	}
}
