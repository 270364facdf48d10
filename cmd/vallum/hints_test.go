package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/broker"
)

// vallumFor runs the CLI with args for at most d and returns its error (nil
// when it ran until stopped).
func vallumFor(t *testing.T, d time.Duration, args ...string) error {
	_, err := vallumOut(t, d, args...)
	return err
}

// vallumOut is vallumFor that also returns what vallum printed.
func vallumOut(t *testing.T, d time.Duration, args ...string) (string, error) {
	t.Helper()
	t.Setenv("VALLUM_CONFIG", "")
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := root.ExecuteContext(ctx)
	if ctx.Err() != nil {
		return out.String(), nil
	}
	return out.String(), err
}

// A port in use (another broker there) says what to do: the daemon can use
// that broker with -h; `vallum broker` must move or stop it.
func TestPortInUseSaysWhatToDo(t *testing.T) {
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	err = vallumFor(t, 5*time.Second, "-t", "blacklist", "--backend", "dryrun", "--listen", addr, "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "-h 127.0.0.1") {
		t.Errorf("daemon on a port in use: %v, want the cause and a hint naming -h 127.0.0.1", err)
	}
	err = vallumFor(t, 5*time.Second, "broker", "--listen", addr, "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "--listen a free port") {
		t.Errorf("broker on a port in use: %v, want the cause and a hint naming --listen", err)
	}
}

// testBroker runs an embedded broker on a free loopback port for the test
// and returns the port.
func testBroker(t *testing.T) string {
	t.Helper()
	b, err := broker.New(broker.Options{Listeners: []broker.Listener{{Kind: broker.KindTCP, Addr: "127.0.0.1:0"}}, Lists: []string{"blacklist"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(b.Addrs()[0], "tcp://"))
	return port
}

// `vallum unban` of an address the list does not hold says so (and still
// sends the event); of a banned one, it says nothing more.
func TestUnbanNotBanned(t *testing.T) {
	port := testBroker(t)
	out, err := vallum(t, "", "-p", port, "unban", "blacklist", "192.0.2.9")
	if err != nil || !strings.Contains(out, "192.0.2.9 is not banned on blacklist") {
		t.Errorf("unban of an address never banned: %v, printed %q; want it to say it is not banned", err, out)
	}
	if out, err := vallum(t, "", "-p", port, "ban", "blacklist", "192.0.2.9"); err != nil {
		t.Fatalf("ban: %v\n%s", err, out)
	}
	out, err = vallum(t, "", "-p", port, "unban", "blacklist", "192.0.2.9")
	if err != nil || strings.Contains(out, "not banned") {
		t.Errorf("unban of a banned address: %v, printed %q; want silence", err, out)
	}
	out, err = vallum(t, "", "-p", port, "unban", "blacklist", "192.0.2.9")
	if err != nil || !strings.Contains(out, "not banned") {
		t.Errorf("second unban: %v, printed %q; want it to say it is not banned any more", err, out)
	}
}

// tlsPort runs a TLS server on a free loopback port that, like a TLS
// broker, drops a client after its handshake or junk; it returns the port.
func tlsPort(t *testing.T) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	l, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	return serveAndDrop(t, l)
}

// serveAndDrop accepts on l until the test ends, reading a byte of each
// connection and closing it; it returns l's port.
func serveAndDrop(t *testing.T, l net.Listener) string {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Read(make([]byte, 1))
				c.Close()
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// A plain connection to a TLS port says to use TLS, not only EOF; a port
// that is not TLS gets no such hint.
func TestTLSPortHint(t *testing.T) {
	tport := tlsPort(t)
	pl, err := net.Listen("tcp4", "127.0.0.1:0") // closes every connection: EOF too, but no TLS
	if err != nil {
		t.Fatal(err)
	}
	pport := serveAndDrop(t, pl)
	_, err = vallum(t, "", "-h", "127.0.0.1", "-p", tport, "list", "blacklist")
	if err == nil || !strings.Contains(err.Error(), "speaks TLS") || !strings.Contains(err.Error(), "-T") {
		t.Errorf("plain MQTT to a TLS port: %v; want a hint to use TLS (-T)", err)
	}
	_, err = vallum(t, "", "-h", "127.0.0.1", "-p", pport, "list", "blacklist")
	if err == nil || strings.Contains(err.Error(), "TLS") {
		t.Errorf("plain MQTT to a port that drops it: %v; want an error without a TLS hint", err)
	}
}

// The daemon, retrying a plain connection to a TLS port, logs that the
// broker speaks TLS (its retries say only EOF).
func TestDaemonTLSPortHint(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the daemon's first retries")
	}
	out, err := vallumOut(t, 5*time.Second, "-h", "127.0.0.1", "-p", tlsPort(t), "-t", "blacklist", "--backend", "dryrun", "--data-dir", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "the broker speaks TLS on this port: connect with -T") {
		t.Errorf("daemon log lacks the TLS hint:\n%s", out)
	}
}
