package feed

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// ErrTooLarge: a fetched feed went past the size bound.
var ErrTooLarge = errors.New("feed too large")

// maxRedirects a fetch follows (feeds move to CDNs).
const maxRedirects = 5

// Fetch GETs an http:// or https:// URL, following redirects, and returns
// its body, which fails with ErrTooLarge past max bytes and with
// io.ErrUnexpectedEOF when cut short of its Content-Length. ctx bounds the
// whole fetch, body included; Close releases it. roots verifies https
// (nil: the system's).
//
// It speaks HTTP/1.1 by hand over net and crypto/tls, with net/http's
// response reader only: net/http's Client and Transport cost 131 KB more
// on the arm64 router build, which has 235 KB left. So no proxy settings
// are read: feeds are fetched directly.
func Fetch(ctx context.Context, rawURL string, max int64, roots *x509.CertPool) (io.ReadCloser, error) {
	for range maxRedirects + 1 {
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("feed URL %q: want http:// or https://HOST/PATH", wire.Clip(rawURL))
		}
		resp, conn, err := get(ctx, u, roots)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", wire.Clip(rawURL), err)
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return &body{r: resp.Body, conn: conn, left: max}, nil
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
			http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			conn.Close()
			next, err := u.Parse(resp.Header.Get("Location"))
			if err != nil {
				return nil, fmt.Errorf("fetch %s: bad redirect: %w", wire.Clip(rawURL), err)
			}
			rawURL = next.String()
		default:
			conn.Close()
			return nil, fmt.Errorf("fetch %s: %s", wire.Clip(rawURL), wire.Clip(resp.Status))
		}
	}
	return nil, fmt.Errorf("fetch %s: more than %d redirects", wire.Clip(rawURL), maxRedirects)
}

// get sends one GET on a connection of its own and reads the response's
// head. The connection closes when ctx ends.
func get(ctx context.Context, u *url.URL, roots *x509.CertPool) (*http.Response, net.Conn, error) {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	conn = &ctxConn{Conn: conn, stop: stop}
	if u.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12, RootCAs: roots})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, err
		}
		conn = tc
	}
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: vallum-import\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
		u.RequestURI(), u.Host)
	if err == nil {
		// The head is bounded too: a server sending headers for ever
		// would otherwise fill the memory before any body bound applies.
		lr := &headLimit{r: conn, left: maxHead}
		var resp *http.Response
		if resp, err = http.ReadResponse(bufio.NewReader(lr), nil); err == nil {
			lr.left = -1 // the body: bounded by body
			return resp, conn, nil
		}
	}
	conn.Close()
	return nil, nil, err
}

// maxHead bounds a response's status line and headers.
const maxHead = 1 << 20

// headLimit fails a read past left bytes; left < 0: no bound.
type headLimit struct {
	r    io.Reader
	left int64
}

func (h *headLimit) Read(p []byte) (int, error) {
	if h.left < 0 {
		return h.r.Read(p)
	}
	if h.left == 0 {
		return 0, fmt.Errorf("%w: response head over %d bytes", ErrTooLarge, maxHead)
	}
	if int64(len(p)) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= int64(n)
	return n, err
}

// ctxConn stops watching the context when closed.
type ctxConn struct {
	net.Conn
	stop func() bool
}

func (c *ctxConn) Close() error { c.stop(); return c.Conn.Close() }

// body bounds what a response body yields.
type body struct {
	r    io.ReadCloser
	conn net.Conn
	left int64
}

func (b *body) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left <= 0 {
		// Exactly max bytes: whether more would come is unknown, so
		// refuse rather than take a cut feed.
		return n, ErrTooLarge
	}
	return n, err
}

func (b *body) Close() error { b.r.Close(); return b.conn.Close() }
