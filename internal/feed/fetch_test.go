package feed

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// feedServer serves the fetch cases; block is closed to end the hanging one.
func feedServer(block chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/feed":
			w.Write([]byte("192.0.2.1\n192.0.2.2\n"))
		case "/moved":
			http.Redirect(w, r, "/feed", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/chunked":
			w.Write([]byte("192.0.2.1\n"))
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write([]byte("192.0.2.2\n"))
		case "/cut":
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("192.0.2.1\n"))
			panic(http.ErrAbortHandler) // the connection drops short of 100 bytes
		case "/big":
			for range 100 {
				w.Write([]byte(strings.Repeat("192.0.2.1\n", 100)))
			}
		case "/headers":
			for i := range 40 {
				w.Header().Set(fmt.Sprint("X-Big-", i), strings.Repeat("a", 64<<10))
			}
			w.Write([]byte("192.0.2.1\n"))
		case "/hang":
			w.Write([]byte("192.0.2.1\n"))
			w.(http.Flusher).Flush()
			<-block
		default:
			http.NotFound(w, r)
		}
	})
}

func TestFetch(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(feedServer(block))
	defer srv.Close()
	defer close(block)
	tlsSrv := httptest.NewTLSServer(feedServer(block))
	defer tlsSrv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(tlsSrv.Certificate())

	for _, tc := range []struct {
		name, url string
		roots     *x509.CertPool
		want      string // the body, when it reads whole
		err       error  // or the error of Fetch or of the read
		errText   string
	}{
		{"plain", srv.URL + "/feed", nil, "192.0.2.1\n192.0.2.2\n", nil, ""},
		{"redirect", srv.URL + "/moved", nil, "192.0.2.1\n192.0.2.2\n", nil, ""},
		{"chunked", srv.URL + "/chunked", nil, "192.0.2.1\n192.0.2.2\n", nil, ""},
		{"https", tlsSrv.URL + "/feed", roots, "192.0.2.1\n192.0.2.2\n", nil, ""},
		{"https unknown CA", tlsSrv.URL + "/feed", nil, "", nil, "certificate"},
		{"not found", srv.URL + "/nope", nil, "", nil, "404"},
		{"redirect loop", srv.URL + "/loop", nil, "", nil, "redirects"},
		{"cut short", srv.URL + "/cut", nil, "", io.ErrUnexpectedEOF, ""},
		{"too large", srv.URL + "/big", nil, "", ErrTooLarge, ""},
		{"endless headers", srv.URL + "/headers", nil, "", ErrTooLarge, ""},
		{"hangs", srv.URL + "/hang", nil, "", nil, "timeout"},
		{"not http", "ftp://example.org/x", nil, "", nil, "want http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A second is the hanging server's test; the others have time
			// for a TLS handshake under qemu on a loaded machine (over 1 s
			// for mips in CI).
			wait := 30 * time.Second
			if tc.errText == "timeout" {
				wait = time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			b, err := Fetch(ctx, tc.url, 50000, tc.roots)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(b)
				b.Close()
			}
			switch {
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Fatalf("Fetch(%s): %v, want %v", tc.url, err, tc.err)
			case tc.errText != "" && (err == nil || !strings.Contains(err.Error(), tc.errText)):
				var ne net.Error
				if tc.errText == "timeout" && errors.As(err, &ne) && ne.Timeout() {
					return
				}
				t.Fatalf("Fetch(%s): %v, want an error saying %q", tc.url, err, tc.errText)
			case tc.err == nil && tc.errText == "" && (err != nil || string(got) != tc.want):
				t.Fatalf("Fetch(%s) = %q, %v; want %q", tc.url, got, err, tc.want)
			}
		})
	}
}
