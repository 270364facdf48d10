package broker

import (
	"bytes"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The router builds link a copy of gorilla/websocket without
// permessage-deflate and of mochi without listeners from its config
// (contrib/trim-modules.sh). These tests hold vallum to what makes that
// safe, and .ci/qemu-routers runs them against the trimmed copies.

// TestWebSocketRefusesCompression: a client that offers permessage-deflate
// gets a connection without it and speaks MQTT over it; one that sends a
// compressed frame anyway is cut off, and the broker serves the next.
func TestWebSocketRefusesCompression(t *testing.T) {
	b := start(t, Options{Listeners: []Listener{local(KindWS)}, AllowAnonymous: true})
	u := url(t, b, KindWS)
	d := websocket.Dialer{EnableCompression: true, Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'c'}
	mqttOver := func(c *websocket.Conn) error {
		if err := c.WriteMessage(websocket.BinaryMessage, connect); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, p, err := c.ReadMessage()
		if err == nil && !bytes.Equal(p, []byte{0x20, 2, 0, 0}) {
			t.Errorf("CONNACK = % x, want 20 02 00 00", p)
		}
		return err
	}

	c, resp, err := d.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial offering compression: %v", err)
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Errorf("broker negotiated %q, want no extension", ext)
	}
	if err := mqttOver(c); err != nil {
		t.Errorf("MQTT over a connection that offered compression: %v", err)
	}
	c.Close()

	// A frame with RSV1 (compressed) set on a connection without it.
	raw, resp, err := d.Dial(u, http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	nc := raw.UnderlyingConn()
	// FIN, RSV1, binary; masked, 2 bytes.
	frame := []byte{0x80 | 0x40 | 0x2, 0x80 | 2, 1, 2, 3, 4, 0x10 ^ 1, 0x00 ^ 2}
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	for {
		if _, err := nc.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Error("connection with a compressed frame still open after 5 s, want it closed")
			}
			break
		}
	}
	raw.Close()

	c, _, err = d.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial after the compressed frame: %v", err)
	}
	defer c.Close()
	if err := mqttOver(c); err != nil {
		t.Errorf("MQTT after the compressed frame: %v", err)
	}
}

// TestNoListenersFromConfig: vallum attaches its listeners itself, so
// mochi's config-driven listeners (refused in the trimmed copy) stay unused.
func TestNoListenersFromConfig(t *testing.T) {
	b := start(t, Options{Listeners: []Listener{local(KindTCP), local(KindWS)}, AllowAnonymous: true})
	if n := len(b.srv.Options.Listeners); n != 0 {
		t.Errorf("mochi's Options.Listeners has %d entries, want none", n)
	}
	for _, k := range []string{KindTCP, KindWS} {
		if u := url(t, b, k); !strings.Contains(u, "127.0.0.1:") {
			t.Errorf("%s listener at %q", k, u)
		}
	}
}
