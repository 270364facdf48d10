package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert, key, pool}
}

// issue returns a certificate for 127.0.0.1 signed by ca.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// writePEM writes c's certificate and key and returns their paths.
func writePEM(t *testing.T, c tls.Certificate) (cert, key string) {
	t.Helper()
	dir := t.TempDir()
	kb, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write(t, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}))
	write(t, key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	return cert, key
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	serverCA, clientCA, rogueCA := newCA(t, "server ca"), newCA(t, "client ca"), newCA(t, "rogue ca")
	cert, key := writePEM(t, serverCA.issue(t, "broker", x509.ExtKeyUsageServerAuth))
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	write(t, caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientCA.cert.Raw}))
	good := clientCA.issue(t, "edge1", x509.ExtKeyUsageClientAuth)
	rogue := rogueCA.issue(t, "edge1", x509.ExtKeyUsageClientAuth)

	t.Run("server only", func(t *testing.T) {
		b := start(t, Options{Listeners: []Listener{local(KindTLS)}, TLSCert: cert, TLSKey: key})
		c := mustDial(t, url(t, b, KindTLS), withTLS(&tls.Config{RootCAs: serverCA.pool}))
		c.sub(t, "blacklist/#", 1)
		c.pub(t, "blacklist/add", 1, false, "192.0.2.1")
		if m := c.next(t, 5*time.Second); m.payload != "192.0.2.1" {
			t.Errorf("got %q over tls, want 192.0.2.1", m.payload)
		}
		// vallum's own dialler (bridge/mqttconn) over TLS, checking the name.
		v := mustDial(t, url(t, b, KindTLS), withTLS(&tls.Config{RootCAs: serverCA.pool}), viaMqttconn)
		v.sub(t, "blacklist/#", 1)
		c.pub(t, "blacklist/add", 1, false, "192.0.2.2")
		if m := v.next(t, 5*time.Second); m.payload != "192.0.2.2" {
			t.Errorf("mqttconn client got %q over tls, want 192.0.2.2", m.payload)
		}
		if _, err := dial(t, url(t, b, KindTLS), withTLS(&tls.Config{RootCAs: rogueCA.pool}), viaMqttconn); err == nil {
			t.Errorf("mqttconn client that does not trust the broker's CA connected")
		}
		if _, err := dial(t, url(t, b, KindTLS), withTLS(&tls.Config{RootCAs: rogueCA.pool})); err == nil {
			t.Errorf("client that does not trust the broker's CA connected")
		}
	})
	t.Run("mutual", func(t *testing.T) {
		b := start(t, Options{Listeners: []Listener{local(KindTLS)}, TLSCert: cert, TLSKey: key, TLSClientCA: caFile})
		u := url(t, b, KindTLS)
		for _, tt := range []struct {
			name  string
			certs []tls.Certificate
			ok    bool
		}{
			{"client certificate", []tls.Certificate{good}, true},
			{"no client certificate", nil, false},
			{"certificate of another CA", []tls.Certificate{rogue}, false},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := dial(t, u, withTLS(&tls.Config{RootCAs: serverCA.pool, Certificates: tt.certs}))
				if (err == nil) != tt.ok {
					t.Errorf("connect with %s: err %v, want success %v", tt.name, err, tt.ok)
				}
			})
		}
	})
	t.Run("missing key", func(t *testing.T) {
		_, err := New(Options{Listeners: []Listener{local(KindTLS)}})
		if err == nil {
			t.Errorf("New(tls listener without cert) = nil error")
		}
	})
}
