package mqttconn

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// Open dials the broker as paho's own dialler does (tcp, ssl and its
// aliases, ws, wss, unix; proxies from the environment) and wraps the
// connection. It is a paho OpenConnectionFunc.
func Open(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	c, err := dial(uri, o)
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

func dial(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: 30 * time.Second}
	}
	switch uri.Scheme {
	case "ws", "wss":
		u := *uri // gorilla refuses a URL with user info
		u.User = nil
		var t *tls.Config
		if uri.Scheme == "wss" {
			t = o.TLSConfig
		}
		return mqtt.NewWebsocket(u.String(), t, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	case "mqtt", "tcp":
		return proxy.FromEnvironmentUsing(d).Dial("tcp", uri.Host)
	case "unix":
		if uri.Host != "" {
			return d.Dial("unix", uri.Host)
		}
		return d.Dial("unix", uri.Path)
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		return dialTLS(d, uri.Host, o.TLSConfig)
	}
	return nil, fmt.Errorf("unknown protocol %q", uri.Scheme)
}

// dialTLS connects directly, or through all_proxy when it is set, as paho.
func dialTLS(d *net.Dialer, host string, t *tls.Config) (net.Conn, error) {
	if os.Getenv("all_proxy") == "" {
		return tls.DialWithDialer(d, "tcp", host, t)
	}
	raw, err := proxy.FromEnvironment().Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, withServerName(t, host))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// withServerName fills in the server name from the address, as
// tls.DialWithDialer does, so that a proxied connection checks it too.
func withServerName(t *tls.Config, host string) *tls.Config {
	if t == nil {
		t = &tls.Config{}
	}
	if t.ServerName != "" {
		return t
	}
	t = t.Clone()
	if h, _, err := net.SplitHostPort(host); err == nil {
		t.ServerName = h
	} else {
		t.ServerName = host
	}
	return t
}
