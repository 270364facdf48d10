//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"github.com/vallum/vallum/internal/lab"
)

// The attacks of issue 13 against a hub (vallum with its embedded broker
// and a users file) and an edge host syncing from it, each checked by what
// the victim and the operator see: the victim's kernel set, the hub's log
// and metrics, the hub's memory.

// attackHub starts a hub with users edge1, edge2 (hosts) and reporter,
// TCP on 1883, WebSocket on 8080, metrics on 9101.
func attackHub(t *testing.T, l *lab.Lab, dir string) (*lab.Host, *lab.Proc, map[string]hubUser) {
	t.Helper()
	hub := addHost(t, l, "hub")
	usersFile, u := writeUsers(t, dir, hubUsers, "")
	hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "0.0.0.0:1883", "--listen", "ws://0.0.0.0:8080",
		"--users", usersFile, "-t", "blacklist", "--metrics", "127.0.0.1:9101"))
	killAtEnd(t, &hv)
	return hub, hv, u
}

// login connects to the hub's loopback as user, with opts applied.
func login(hub *lab.Host, user string, opts ...func(*mqtt.ClientOptions)) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().SetUsername(user).SetPassword("pw-of-" + user).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	for _, f := range opts {
		f(o)
	}
	return hub.Connect(1883, o)
}

func mustLogin(t *testing.T, hub *lab.Host, user string, opts ...func(*mqtt.ClientOptions)) mqtt.Client {
	t.Helper()
	c, err := login(hub, user, opts...)
	if err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// wantHubRefused waits for the hub to log a refusal with reason and every
// one of want in one line, and to count it.
func wantHubRefused(t *testing.T, hub *lab.Host, hv *lab.Proc, reason string, want ...string) {
	t.Helper()
	want = append([]string{"reason=" + reason}, want...)
	err := lab.Eventually(10*time.Second, func() (bool, string) {
		for _, line := range strings.Split(hv.Output(), "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				if len(line) > 500 {
					return false, "refusal logged in a line of " + strconv.Itoa(len(line)) + " bytes"
				}
				return true, ""
			}
		}
		return false, fmt.Sprintf("no hub log line with %q", want)
	})
	if err != nil {
		t.Error(err)
		return
	}
	m, err := hub.Metrics(9101)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	if n := m[`vallum_broker_refused_total{reason="`+reason+`"}`]; n < 1 {
		t.Errorf("vallum_broker_refused_total{reason=%q} = %v, want at least 1", reason, n)
	}
}

// TestAttackHostLogin: with its own host login, an attacker tries each
// attack of issue 13 on a victim edge holding 20,000 bans: forged sync
// markers during the victim's resync, taking over its client id, a will
// on a ban topic, junk retained under ROOT/ban/, a subscription flood and
// a deep topic. The victim's set stays whole and keeps receiving bans; the
// hub logs and counts each refusal.
func TestAttackHostLogin(t *testing.T) {
	const n = 20000
	l, dir := newLab(t)
	hub, hv, u := attackHub(t, l, dir)
	edge := addHost(t, l, "edge1")

	rep := mustLogin(t, hub, "reporter")
	toks := make([]mqtt.Token, 0, n)
	exp := time.Now().Add(time.Hour)
	for i := range n {
		b := ban(i, time.Now(), exp)
		toks = append(toks, rep.Publish(b.Topic, 1, true, b.Payload))
	}
	waitTokens(t, toks)
	victim := must[*lab.Proc](t)(edge.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-u", "edge1", "--password-file", u["edge1"].pwFile, "-t", "blacklist"))
	killAtEnd(t, &victim)
	waitEntries(t, edge, "blacklist", n, 60*time.Second)
	idFile := must[[]byte](t)(os.ReadFile(filepath.Join(dir, "edge1-data", "client-id")))
	victimID := "vallum-" + strings.TrimSpace(string(idFile))
	marker := "vallum/sync/" + victimID

	// Markers: the attacker can neither read them nor forge them, even
	// while the victim resyncs.
	evil := mustLogin(t, hub, "edge2", func(o *mqtt.ClientOptions) { o.SetClientID("evil") })
	for _, f := range []string{marker, "vallum/sync/#", "#", "+/sync/+"} {
		tok := evil.Subscribe(f, 0, nil)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
		if code := tok.(*mqtt.SubscribeToken).Result()[f]; code < 0x80 {
			t.Errorf("host edge2 may subscribe to %s (code %#x), want refused", f, code)
		}
	}
	wantHubRefused(t, hub, hv, "acl_subscribe", "user=edge2", "topic="+marker)
	synced := strings.Count(victim.Output(), "msg=synced")
	victim.Signal(syscall.SIGHUP)
	forged := 0
	for ; forged < 3000 && strings.Count(victim.Output(), "msg=synced") == synced; forged++ {
		evil.Publish(marker, 0, false, "B"+strconv.Itoa(1+forged%4)) // QoS 0: refused without a disconnect
		time.Sleep(time.Millisecond)
	}
	t.Logf("%d forged markers sent during the victim's resync", forged)
	if err := lab.Eventually(60*time.Second, func() (bool, string) {
		return strings.Count(victim.Output(), "msg=synced") > synced, "the victim's resync did not finish"
	}); err != nil {
		t.Fatal(err)
	}
	if got := must[int](t)(edge.SetCount("blacklist")); got != n {
		t.Errorf("victim's set holds %d entries after a resync under forged markers, want %d", got, n)
	}
	wantHubRefused(t, hub, hv, "acl_publish", "user=edge2", "topic="+marker)

	// Client id: refused, the victim's session untouched.
	for range 3 {
		if c, err := login(hub, "edge2", func(o *mqtt.ClientOptions) { o.SetClientID(victimID).SetCleanSession(false) }); err == nil {
			c.Disconnect(0)
			t.Errorf("edge2 connected with the victim's client id %s, want refused", victimID)
		}
	}
	wantHubRefused(t, hub, hv, "client_id_taken", "user=edge2", "client="+victimID, "belongs to user edge1")

	// Will: a retained will on a ban topic, to lift one of the bans (an
	// expired state) or to ban: refused at CONNECT.
	for _, w := range []struct{ topic, payload string }{
		{stateTopic(7), `{"at":1000,"expires":2000}`},
		{"blacklist/ban/203.0.113.99", `{"at":1700000000000}`},
	} {
		if c, err := login(hub, "edge2", func(o *mqtt.ClientOptions) { o.SetWill(w.topic, w.payload, 1, true) }); err == nil {
			c.Disconnect(0)
			t.Errorf("edge2 connected with a retained will on %s, want refused", w.topic)
		}
	}
	wantHubRefused(t, hub, hv, "will", "user=edge2", "topic="+stateTopic(7))

	// Junk under ROOT/ban/ by the reporter: acknowledged over MQTT 3.1.1,
	// never stored nor sent to hosts.
	junk := strings.Repeat("x", 3<<20)
	for i := range 3 {
		tok := rep.Publish("blacklist/ban/junk/"+strconv.Itoa(i), 1, true, junk)
		if !tok.WaitTimeout(30 * time.Second) {
			t.Fatal("junk publish not acknowledged")
		}
	}
	wantHubRefused(t, hub, hv, "bad_state", "user=reporter", "topic=blacklist/ban/junk/0")

	// Subscription flood and a deep topic.
	flood := map[string]byte{}
	for i := range 5000 {
		flood["blacklist/f/"+strconv.Itoa(i)] = 0
	}
	tok := evil.SubscribeMultiple(flood, nil)
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe flood: %v", tok.Error())
	}
	granted := 0
	for _, code := range tok.(*mqtt.SubscribeToken).Result() {
		if code < 0x80 {
			granted++
		}
	}
	if granted > 256 {
		t.Errorf("granted %d of 5,000 subscriptions, want at most 256", granted)
	}
	wantHubRefused(t, hub, hv, "subscriptions", "user=edge2")
	deep := "blacklist" + strings.Repeat("/a", 20000)
	evil2 := mustLogin(t, hub, "edge2")
	tok = evil2.Subscribe(deep, 0, nil)
	if tok.WaitTimeout(10*time.Second) && tok.Error() == nil && tok.(*mqtt.SubscribeToken).Result()[deep] < 0x80 {
		t.Error("a 20,001-level subscription was granted")
	}
	wantHubRefused(t, hub, hv, "topic_size", "user=edge2")

	// The victim still has every ban, the junk never reached it, and a new
	// ban still arrives.
	out, err := banFrom(t, edge, hub, dir, u["reporter"], "ban", "blacklist", "203.0.113.77")
	if err != nil {
		t.Fatalf("reporter's ban: %v\n%s", err, out)
	}
	waitEntries(t, edge, "blacklist", n+1, 30*time.Second)
	if p := must[[]string](t)(edge.Prefixes("blacklist")); slices.Contains(p, "203.0.113.99") {
		t.Error("the will's ban reached the victim")
	}
	if strings.Contains(victim.Output(), "junk") {
		t.Error("the victim saw the junk state")
	}
	if strings.Contains(victim.Output(), "disconnected") {
		t.Errorf("the victim was disconnected during the attacks:\n%s", victim.Output())
	}
}

// TestAttackHalfOpenFlood: 500 connections without a login from one
// address, 3 in 4 silent, 1 in 4 announcing a 4 MiB CONNECT and sending
// only 1 MiB of it. The hub's
// memory stays bounded, each is closed (at once, or at the CONNECT
// deadline), and the hub keeps serving.
func TestAttackHalfOpenFlood(t *testing.T) {
	l, dir := newLab(t)
	hub, hv, u := attackHub(t, l, dir)
	base := must[int64](t)(hv.RSS())
	peak := sampleRSS(t, hv)
	var conns []net.Conn
	var writers sync.WaitGroup
	body := make([]byte, 1<<20)
	for i := range 500 {
		c, err := hub.Dial(1883)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		conns = append(conns, c)
		if i%4 != 3 {
			continue
		}
		writers.Add(1)
		go func() { // a CONNECT of 4 MiB, 1 MiB of it sent
			defer writers.Done()
			_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x01}); err == nil {
				_, _ = c.Write(body)
			}
		}()
	}
	writers.Wait()
	open := 0
	deadline := time.Now().Add(30 * time.Second) // one for all: bounded when none is closed
	for _, c := range conns {
		_ = c.SetReadDeadline(deadline)
		if _, err := c.Read(make([]byte, 1)); err != nil && isTimeout(err) {
			open++
		}
	}
	if open > 0 {
		t.Errorf("%d of 500 connections still open 30 s after the flood, want none", open)
	}
	top := peak()
	t.Logf("hub RSS: %d MiB before, %d MiB peak during the flood of 500; %d left open", base>>20, top>>20, open)
	if top-base > 64<<20 {
		t.Errorf("hub RSS grew by %d MiB under 500 half-open connections, want under 64 MiB", (top-base)>>20)
	}
	wantHubRefused(t, hub, hv, "connect_timeout")
	wantHubRefused(t, hub, hv, "connect_size")
	wantHubRefused(t, hub, hv, "conns_per_addr", "remote=127.0.0.1")
	out, err := banFrom(t, hub, hub, dir, u["reporter"], "ban", "blacklist", "203.0.113.78")
	if err != nil {
		t.Fatalf("ban after the flood: %v\n%s", err, out)
	}
	waitPrefixes(t, hub, "blacklist", "203.0.113.78")
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestAttackWebSocketRebinding: a web page whose name was rebound to the
// hub's address upgrades with its own Host and Origin: refused. With the
// hub's own address, a browser client without a login is still no admin,
// on a hub whose loopback clients are trusted, so it cannot ban.
func TestAttackWebSocketRebinding(t *testing.T) {
	l, dir := newLab(t)
	hub := addHost(t, l, "hub")
	hv := must[*lab.Proc](t)(hub.StartVallum(dir, vallumBin, "--listen", "127.0.0.1:1883", "--listen", "ws://127.0.0.1:8080",
		"-t", "blacklist", "--metrics", "127.0.0.1:9101"))
	killAtEnd(t, &hv)
	for _, host := range []string{"attacker.example:8080", "attacker.example"} {
		c := must[net.Conn](t)(hub.Dial(8080))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n", host, host)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("upgrade with Host %s: %s, want 403 Forbidden", host, resp.Status)
		}
	}
	wantHubRefused(t, hub, hv, "ws_host", "host=attacker.example:8080")

	// Same address, anonymous, as a page on the right name would be.
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, NetDial: func(string, string) (net.Conn, error) { return hub.Dial(8080) }}
	ws, _, err := d.Dial("ws://127.0.0.1:8080/", http.Header{"Origin": {"http://127.0.0.1:8080"}})
	if err != nil {
		t.Fatalf("upgrade with the hub's own address: %v", err)
	}
	defer ws.Close()
	connect := []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 0} // MQTT 3.1.1, clean, no id
	if err := ws.WriteMessage(websocket.BinaryMessage, connect); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, ack, err := ws.ReadMessage()
	if err != nil || len(ack) != 4 || ack[0] != 0x20 || ack[3] == 0 {
		t.Errorf("anonymous WebSocket CONNECT: CONNACK %x (%v), want a refusal", ack, err)
	}
	wantHubRefused(t, hub, hv, "ws_anonymous")
}

// TestHubQoS2 is vallumd's fail2ban recipe against the hub: mosquitto_pub
// -q 2, over MQTT 3.1.1 and MQTT 5, bans on an edge.
func TestHubQoS2(t *testing.T) {
	l, dir := newLab(t)
	hub, _, u := attackHub(t, l, dir)
	edge := addHost(t, l, "edge1")
	must[*lab.Proc](t)(edge.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-u", "edge1", "--password-file", u["edge1"].pwFile, "-t", "blacklist"))
	want := []string{}
	for i, v := range []string{"mqttv311", "mqttv5"} {
		ip := "203.0.113." + strconv.Itoa(80+i)
		out, err := edge.Exec("mosquitto_pub", "-V", v, "-h", hub.Addr4, "-q", "2", "-u", "reporter", "-P", "pw-of-reporter",
			"-t", "blacklist/add", "-m", ip)
		if err != nil {
			t.Errorf("mosquitto_pub -V %s -q 2: %v\n%s", v, err, out)
		}
		want = append(want, ip)
		waitPrefixes(t, edge, "blacklist", want...)
	}
}
