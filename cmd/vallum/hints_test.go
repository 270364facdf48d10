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
		return nil
	}
	return err
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

// A plain connection to a TLS port says to use TLS, not only EOF; a port
// that is not TLS gets no such hint.
func TestTLSPortHint(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	tl, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	pl, err := net.Listen("tcp4", "127.0.0.1:0") // closes every connection: EOF too, but no TLS
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	for _, l := range []net.Listener{tl, pl} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { // as a TLS broker does: handshake (or not), then drop junk
					c.SetDeadline(time.Now().Add(5 * time.Second))
					c.Read(make([]byte, 1))
					c.Close()
				}()
			}
		}()
	}
	_, tport, _ := net.SplitHostPort(tl.Addr().String())
	_, pport, _ := net.SplitHostPort(pl.Addr().String())
	_, err = vallum(t, "", "-h", "127.0.0.1", "-p", tport, "list", "blacklist")
	if err == nil || !strings.Contains(err.Error(), "speaks TLS") || !strings.Contains(err.Error(), "-T") {
		t.Errorf("plain MQTT to a TLS port: %v; want a hint to use TLS (-T)", err)
	}
	_, err = vallum(t, "", "-h", "127.0.0.1", "-p", pport, "list", "blacklist")
	if err == nil || strings.Contains(err.Error(), "TLS") {
		t.Errorf("plain MQTT to a port that drops it: %v; want an error without a TLS hint", err)
	}
}
