package broker

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseListen(t *testing.T) {
	tests := []struct {
		name, in string
		want     Listener
		wantErr  bool
	}{
		{name: "tcp", in: "tcp://0.0.0.0:1883", want: Listener{KindTCP, "0.0.0.0:1883"}},
		{name: "tls any host", in: "tls://:8883", want: Listener{KindTLS, ":8883"}},
		{name: "ws", in: "ws://127.0.0.1:8080", want: Listener{KindWS, "127.0.0.1:8080"}},
		{name: "bare", in: "127.0.0.1:1883", want: Listener{KindTCP, "127.0.0.1:1883"}},
		{name: "ipv6", in: "tcp://[::1]:1883", want: Listener{KindTCP, "[::1]:1883"}},
		{name: "unknown scheme", in: "http://:80", wantErr: true},
		{name: "no port", in: "tcp://127.0.0.1", wantErr: true},
		{name: "empty port", in: "127.0.0.1:", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseListen(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseListen(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestAnonymousOnNetworkAddress(t *testing.T) {
	o := Options{Listeners: []Listener{{KindTCP, "0.0.0.0:0"}}}
	_, err := New(o)
	if err == nil || !strings.Contains(err.Error(), "--users") || !strings.Contains(err.Error(), "--allow-anonymous") {
		t.Fatalf("New(anonymous on 0.0.0.0) = %v, want an error naming --users and --allow-anonymous", err)
	}
	o.AllowAnonymous = true
	b := start(t, o)
	// Anonymous clients on a network address are hosts and reporters,
	// never admins.
	c := mustDial(t, strings.Replace(b.Addrs()[0], "tcp://0.0.0.0", "tcp://127.0.0.1", 1))
	tok := c.Subscribe("$SYS/#", 0, nil)
	if err := wait(t, tok, "subscribe $SYS"); err != nil {
		t.Fatal(err)
	}
	if code := tok.(interface{ Result() map[string]byte }).Result()["$SYS/#"]; code < 0x80 {
		t.Errorf("anonymous subscribe to $SYS/# on a network broker granted (code %#x), want refused", code)
	}
}

func TestPortInUse(t *testing.T) {
	b := start(t, Options{Listeners: []Listener{local(KindTCP)}})
	addr := strings.TrimPrefix(b.Addrs()[0], "tcp://")
	for _, kind := range []string{KindTCP, KindWS} {
		if _, err := New(Options{Listeners: []Listener{{kind, addr}}}); err == nil {
			t.Errorf("New(%s on %s, already bound) = nil error, want address in use", kind, addr)
		}
	}
}

const aclUsers = `users:
  - name: rep
    password: "HASH(rep)"
    role: reporter
  - name: host
    password: "HASH(host)"
    role: host
  - name: admin
    password: "HASH(admin)"
    role: admin
  - name: other
    password: "HASH(other)"
    role: reporter
    lists: ["site2/blacklist"]
`

func aclBroker(t *testing.T) (*Broker, string) {
	users := writeUsers(t, aclUsers, "rep", "host", "admin", "other")
	b := start(t, Options{Listeners: []Listener{local(KindTCP)}, UsersFile: users, Lists: []string{"blacklist"}})
	return b, url(t, b, KindTCP)
}

func TestReporterReachesHost(t *testing.T) {
	_, u := aclBroker(t)
	host := mustDial(t, u, withUser("host", "host"))
	host.sub(t, "blacklist/#", 1)
	rep := mustDial(t, u, withUser("rep", "rep"))
	rep.pub(t, "blacklist/add", 1, false, "192.0.2.1")
	if m := host.until(t, "blacklist/add", 5*time.Second); m.payload != "192.0.2.1" {
		t.Errorf("host got %q on blacklist/add, want 192.0.2.1", m.payload)
	}
	// vallum list: a reporter reads the state, not everything.
	rep.sub(t, "blacklist/ban/#", 1)
	if tok := rep.Subscribe("blacklist/#", 1, nil); wait(t, tok, "subscribe") != nil ||
		tok.(interface{ Result() map[string]byte }).Result()["blacklist/#"] < 0x80 {
		t.Errorf("reporter subscribe to blacklist/# granted, want refused")
	}
}

// TestHostCannotBan: a host that publishes a ban is refused, over MQTT
// 3.1.1 (the message is dropped) and 5.0 (the PUBACK says not authorized),
// and no subscriber sees it.
func TestHostCannotBan(t *testing.T) {
	_, u := aclBroker(t)
	admin := mustDial(t, u, withUser("admin", "admin"))
	admin.sub(t, "blacklist/#", 1)
	admin.sub(t, "vallum/sync/#", 1)

	host := mustDial(t, u, withUser("host", "host"), withID("host1"))
	host.pub(t, "blacklist/add", 0, false, "192.0.2.66") // 3.1.1: dropped
	host.pub(t, "vallum/sync/host1", 1, false, "marker") // allowed, and after it in order
	if m := admin.next(t, 5*time.Second); m.topic != "vallum/sync/host1" {
		t.Fatalf("admin got %s %q first, want only the sync marker (host ban must be refused)", m.topic, m.payload)
	}
	other := mustDial(t, u, withUser("other", "other")) // a reporter of another list
	other.pub(t, "blacklist/add", 0, false, "192.0.2.67")
	other.pub(t, "site2/blacklist/add", 1, false, "192.0.2.68")

	// MQTT 5 through mosquitto_pub: the PUBACK carries "not authorized".
	port := u[strings.LastIndexByte(u, ':')+1:]
	out, err := exec.Command("mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port,
		"-u", "host", "-P", "host", "-q", "1", "-t", "blacklist/add", "-m", "192.0.2.77").CombinedOutput()
	t.Logf("mosquitto_pub -V mqttv5 as host: %v, %q", err, out)
	if !strings.Contains(strings.ToLower(string(out)), "not authori") {
		t.Errorf("mosquitto_pub -V mqttv5 as host: %v, output %q; want a not authorized refusal", err, out)
	}
	host.pub(t, "vallum/sync/host1", 1, false, "marker2")
	if m := admin.next(t, 5*time.Second); m.topic != "vallum/sync/host1" || m.payload != "marker2" {
		t.Fatalf("admin got %s %q, want only marker2 (v5 host ban and other list's reporter must be refused)", m.topic, m.payload)
	}
	_, err = exec.Command("mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port,
		"-u", "rep", "-P", "rep", "-q", "1", "-t", "blacklist/add", "-m", "192.0.2.78").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub -V mqttv5 as reporter: %v", err)
	}
	if m := admin.until(t, "blacklist/add", 5*time.Second); m.payload != "192.0.2.78" {
		t.Errorf("admin got %s %q, want the reporter's v5 ban", m.topic, m.payload)
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	_, u := aclBroker(t)
	for _, tt := range []struct{ name, user, pw string }{
		{"wrong password", "rep", "nope"},
		{"unknown user", "nobody", "nobody"},
		{"anonymous", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := dial(t, u, withUser(tt.user, tt.pw)); err == nil {
				t.Errorf("connect as %q/%q succeeded, want refused", tt.user, tt.pw)
			}
		})
	}
	if _, err := dial(t, u, withUser("rep", "rep")); err != nil {
		t.Errorf("connect with the right password: %v", err)
	}
}

func TestUsersFileRefusesPlaintext(t *testing.T) {
	users := writeUsers(t, "users:\n  - name: a\n    password: secret\n    role: host\n")
	_, err := New(Options{Listeners: []Listener{local(KindTCP)}, UsersFile: users})
	if err == nil || !strings.Contains(err.Error(), "vallum broker hash-password") {
		t.Errorf("New(plaintext password) = %v, want an error pointing at vallum broker hash-password", err)
	}
}

// TestWebSocket runs stock paho clients, then clients over vallum's own
// connection (bridge/mqttconn), whose WebSocket dialling is its own code.
// Anonymous WebSocket clients need --allow-anonymous even on loopback (a
// browser is not a local admin).
func TestWebSocket(t *testing.T) {
	b := start(t, Options{Listeners: []Listener{local(KindWS), local(KindTCP)}, AllowAnonymous: true})
	for _, how := range []struct {
		name string
		opts []clientOpt
	}{{"paho", nil}, {"mqttconn", []clientOpt{viaMqttconn}}} {
		t.Run(how.name, func(t *testing.T) {
			ws := mustDial(t, url(t, b, KindWS), how.opts...)
			ws.sub(t, "blacklist/#", 1)
			tcp := mustDial(t, url(t, b, KindTCP), how.opts...)
			for i := range 3 {
				tcp.pub(t, "blacklist/add", 1, false, "192.0.2."+strconv.Itoa(i))
			}
			for i := range 3 {
				if m := ws.next(t, 5*time.Second); m.payload != "192.0.2."+strconv.Itoa(i) {
					t.Errorf("websocket client got %q, want 192.0.2.%d", m.payload, i)
				}
			}
		})
	}
}

func TestStats(t *testing.T) {
	b := start(t, Options{Listeners: []Listener{local(KindTCP)}})
	c := mustDial(t, url(t, b, KindTCP))
	c.sub(t, "blacklist/#", 1)
	c.pub(t, "blacklist/ban/192.0.2.1", 1, true, `{"at":1}`)
	c.next(t, 5*time.Second)
	// mochi counts a message sent after its write returns, which may be
	// after the client has read it: poll, with a deadline.
	var s Stats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s = b.Stats()
		if s.ClientsConnected == 1 && s.MessagesReceived >= 1 && s.MessagesSent >= 1 && s.Retained >= 1 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Errorf("Stats() = %+v, want 1 client, a message in and out, a retained message", s)
}

func TestSetLimit(t *testing.T) {
	var o Options
	for _, s := range []string{"max_conns_per_addr=512", "connect_timeout = 10s", "max_retained_bytes=1048576", "max_message_size=65536"} {
		if err := o.SetLimit(s); err != nil {
			t.Fatalf("SetLimit(%q): %v", s, err)
		}
	}
	if o.Limits.MaxConnsPerAddr != 512 || o.Limits.ConnectTimeout != 10*time.Second ||
		o.Limits.MaxRetainedBytes != 1<<20 || o.MaxMessageSize != 65536 {
		t.Errorf("after SetLimit: %+v, max message size %d", o.Limits, o.MaxMessageSize)
	}
	for _, bad := range []string{"max_conns_per_addr", "nope=1", "max_retained=lots", "connect_timeout=5"} {
		if err := o.SetLimit(bad); err == nil {
			t.Errorf("SetLimit(%q) = nil, want an error", bad)
		}
	}
	// Every limit of the README's table can be set.
	for _, name := range []string{"connect_timeout", "write_stall", "max_connect_size", "max_conns_per_addr", "max_message_size",
		"max_subscriptions", "max_topic_length", "max_topic_levels", "max_topic_aliases", "max_retained",
		"max_retained_bytes", "max_clients", "max_inflight", "max_queued", "session_expiry"} {
		v := "7"
		if strings.HasSuffix(name, "timeout") || strings.HasSuffix(name, "expiry") || strings.HasSuffix(name, "stall") {
			v = "7s"
		}
		if err := o.SetLimit(name + "=" + v); err != nil {
			t.Errorf("SetLimit(%s=%s): %v", name, v, err)
		}
	}
	if err := o.SetLimit("nope=1"); err == nil || !strings.Contains(err.Error(), "max_retained_bytes") {
		t.Errorf("SetLimit(nope=1) = %v, want an error listing the names", err)
	}
}
