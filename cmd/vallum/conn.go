package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/vallum/vallum/internal/datadir"
)

// conn is how to reach and log in to a broker.
type conn struct {
	URL      string
	User     string
	Password string
	TLS      *tls.Config
}

// embedded reports whether no broker was named, so that vallum runs its own.
func (c config) embedded() bool { return c.Host == "" && c.Broker == "" }

// brokerURL builds the URL from --broker, or from -h/-p/-T/-c as vallumd does.
func (c config) brokerURL() (string, error) {
	if c.Broker != "" {
		u, err := url.Parse(c.Broker)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("--broker %q: want scheme://host:port", c.Broker)
		}
		if u.Scheme != "tcp" && u.Scheme != "mqtt" && u.Scheme != "ws" && !tlsScheme[u.Scheme] {
			return "", fmt.Errorf("--broker %q: scheme must be tcp, ssl, ws or wss", c.Broker)
		}
		return c.Broker, nil
	}
	scheme := "tcp"
	if c.useTLS() {
		scheme = "ssl"
	}
	return scheme + "://" + net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), nil
}

// brokerHost is the broker's host name or address, from -h or --broker.
func (c config) brokerHost() string {
	if c.Broker == "" {
		return c.Host
	}
	u, err := url.Parse(c.Broker)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// tlsScheme marks the --broker schemes that mean TLS.
var tlsScheme = map[string]bool{"ssl": true, "tls": true, "mqtts": true, "wss": true}

func brokerScheme(broker string) string {
	scheme, _, _ := strings.Cut(broker, "://")
	return scheme
}

func (c config) useTLS() bool { return c.TLS || c.CAFile != "" || c.Cert != "" }

// tlsConfig loads the CA and client certificate files; nil when TLS is off.
func (c config) tlsConfig() (*tls.Config, error) {
	if !c.useTLS() && !tlsScheme[brokerScheme(c.Broker)] {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file (-c): %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", c.CAFile)
		}
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, errors.New("--cert and --key go together")
	}
	if c.Cert != "" {
		kp, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{kp}
	}
	return t, nil
}

// password returns the password from --password / VALLUM_PASSWORD or from
// --password-file, never both.
func (c config) password() (string, error) {
	if c.PasswordFile == "" {
		return c.Password, nil
	}
	if c.Password != "" {
		return "", errors.New("give the password once: --password (or VALLUM_PASSWORD) or --password-file")
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// clientID returns --client-id, or a stable id of this host: a random one
// kept in the data directory, so that two containers on one host (same
// machine id, same host name with --network host) never share a session.
// Without a writable data directory it falls back to a hash of the machine
// id and the host name.
func (c config) clientID() (string, error) {
	if c.ClientID != "" {
		if strings.ContainsAny(c.ClientID, "+#/\x00") || len(c.ClientID) > 128 {
			return "", fmt.Errorf("--client-id %q: no +, #, / or NUL, at most 128 bytes", c.ClientID)
		}
		return c.ClientID, nil
	}
	path := datadir.Dir(c.DataDir).ClientID()
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return "vallum-" + strings.TrimSpace(string(b)), nil
	}
	id := make([]byte, 8)
	rand.Read(id)
	hexID := hex.EncodeToString(id)
	if os.MkdirAll(c.DataDir, 0o750) == nil && os.WriteFile(path, []byte(hexID+"\n"), 0o640) == nil {
		return "vallum-" + hexID, nil
	}
	mid, _ := os.ReadFile("/etc/machine-id")
	host, _ := os.Hostname()
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(mid)) + "\x00" + host + "\x00" + c.DataDir))
	return "vallum-" + hex.EncodeToString(sum[:8]), nil
}

// lockClientID locks the data dir's client id for this process's bridge,
// before it is read: two bridges with one client id knock each other off
// the broker, every second. Nothing to lock with --client-id. A data dir
// that cannot hold the lock file is no error here (clientID then falls
// back to an id of its own): only a lock held by another process is.
func (c config) lockClientID() (*datadir.Lock, error) {
	if c.ClientID != "" || c.DataDir == "" {
		return nil, nil
	}
	l, err := datadir.Acquire(datadir.Dir(c.DataDir).BridgeLock(), "the client id in "+c.DataDir)
	if le := (*datadir.LockedError)(nil); errors.As(err, &le) {
		return nil, err
	}
	return l, nil
}
