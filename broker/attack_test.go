package broker

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// The tests here attack the broker as a host login (the one every edge
// host has), as a reporter of another list, and with no login at all, and
// check what the victim and the operator see.

const fleetUsers = `users:
  - name: edge1
    password: "HASH(edge1)"
    role: host
  - name: edge2
    password: "HASH(edge2)"
    role: host
  - name: rep
    password: "HASH(rep)"
    role: reporter
  - name: other
    password: "HASH(other)"
    role: reporter
    lists: ["site2/blacklist"]
  - name: admin
    password: "HASH(admin)"
    role: admin
`

// logBuf collects the broker's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines that contain every one of want.
func (l *logBuf) lines(want ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		ok := line != ""
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// wantRefusal checks that a refusal was logged as one short readable line
// with every one of want, and counted under reason.
func wantRefusal(t *testing.T, b *Broker, logs *logBuf, reason string, want ...string) {
	t.Helper()
	want = append([]string{"reason=" + reason}, want...)
	deadline := time.Now().Add(5 * time.Second)
	lines := logs.lines(want...)
	for len(lines) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		lines = logs.lines(want...)
	}
	if len(lines) == 0 {
		t.Errorf("no log line with %q; refusals logged:\n%s", want, strings.Join(logs.lines("refused"), "\n"))
		return
	}
	if len(lines[0]) > 400 {
		t.Errorf("refusal line of %d bytes, want one short line: %.600s", len(lines[0]), lines[0])
	}
	if n := b.Stats().Refused[reason]; n == 0 {
		t.Errorf("refusals counted under %s: 0, want at least 1 (all: %v)", reason, b.Stats().Refused)
	}
}

// drain returns the messages c receives until none came for 300 ms, by
// topic (the last payload). A message published just before a subscribe
// may come twice: live (mochi acknowledges a publish before it delivers
// it) and retained.
func drain(t *testing.T, c *client, filter string) map[string]string {
	t.Helper()
	// The end is a message the client sends itself after its SUBSCRIBE:
	// the broker sends the retained messages before it handles the next
	// packet, so they all come first. (A pause would be a guess: under load
	// retained messages can lag by more than any short pause.) Admins only.
	const end = "vallum/test/end-of-retained"
	// The marker's subscription first: mochi refuses a SUBSCRIBE whose
	// packet id is one of its own retained messages in flight (0x91).
	c.sub(t, end, 1)
	c.sub(t, filter, 1)
	c.pub(t, end, 1, false, "end")
	got := map[string]string{}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-c.msgs:
			if m.topic == end {
				return got
			}
			got[m.topic] = m.payload
		case <-deadline:
			t.Fatal("the end of the retained messages did not come within 10 s")
			return nil
		}
	}
}

// inflight counts the messages in flight to session id.
func inflight(b *Broker, id string) int {
	if cl, ok := b.srv.Clients.Get(id); ok {
		return cl.State.Inflight.Len()
	}
	return 0
}

// waitQueued waits (5 s at most) until the offline session id holds more
// than n messages in flight. mochi acknowledges a publish before it fans it out,
// and a message fanned out to a session in the instant its owner takes it
// back can be left on the old session: a test that reconnects right after
// publishing would race that (seen under load and under qemu).
func waitQueued(b *Broker, id string, n int) {
	for deadline := time.Now().Add(5 * time.Second); inflight(b, id) <= n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// fleet starts a broker with list blacklist, the fleet's users and lim,
// logging to the returned buffer.
func fleet(t *testing.T, lim Limits, extra ...Listener) (*Broker, string, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	users := writeUsers(t, fleetUsers, "edge1", "edge2", "rep", "other", "admin")
	b := start(t, Options{
		Listeners: append([]Listener{local(KindTCP)}, extra...), UsersFile: users, Lists: []string{"blacklist"},
		Limits: lim, Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	return b, url(t, b, KindTCP), logs
}

// TestAttackSyncMarkers: a host login can neither read another host's sync
// markers (to learn its client id or nonce) nor publish on them (to end
// its sync window early).
func TestAttackSyncMarkers(t *testing.T) {
	b, u, logs := fleet(t, Limits{})
	victim := mustDial(t, u, withUser("edge1", "edge1"), withID("vallum-victim"))
	victim.sub(t, "vallum/sync/vallum-victim", 1)

	evil := mustDial(t, u, withUser("edge2", "edge2"), withID("vallum-evil"))
	for _, f := range []string{"vallum/sync/vallum-victim", "vallum/sync/#", "vallum/#", "+/sync/+"} {
		tok := evil.Subscribe(f, 1, nil)
		if err := wait(t, tok, "subscribe "+f); err != nil {
			t.Fatal(err)
		}
		if code := tok.(*paho.SubscribeToken).Result()[f]; code < 0x80 {
			t.Errorf("host edge2 subscribing to %s: granted (%#x), want refused", f, code)
		}
	}
	wantRefusal(t, b, logs, refSubscribe, "user=edge2", "client=vallum-evil", "topic=vallum/sync/vallum-victim")

	evil.Publish("vallum/sync/vallum-victim", 0, false, "B1")
	evil.Publish("vallum/sync/vallum-victim", 1, false, "B2") // MQTT 3.1.1: refused by disconnecting
	victim.pub(t, "vallum/sync/vallum-victim", 1, false, "A1-own")
	if m := victim.next(t, 5*time.Second); m.payload != "A1-own" {
		t.Errorf("victim got %q on its marker topic, want only its own marker", m.payload)
	}
	wantRefusal(t, b, logs, refPublish, "user=edge2", "topic=vallum/sync/vallum-victim")
}

// TestAttackKeeperRecord: the keeper's record of a list tells every host
// whether the broker lost the list. A reporter or a host that forges it
// (a smaller epoch, which keepers adopt) or deletes it is refused; hosts
// and reporters read the record of their lists and of no other.
func TestAttackKeeperRecord(t *testing.T) {
	b, u, logs := fleet(t, Limits{})
	topic := wire.RecordTopic("blacklist")
	watch := mustDial(t, u, withUser("edge1", "edge1"))
	watch.sub(t, topic, 1)
	m := watch.until(t, topic, 5*time.Second)
	rec, err := wire.DecodeRecord([]byte(m.payload))
	if err != nil || rec.Keeper != "hub" {
		t.Fatalf("record of blacklist: %q (%v), want the hub keeper's", m.payload, err)
	}
	forged := string(wire.EncodeRecord(wire.Record{Epoch: "0000000000000000", Since: time.Now()}))
	for _, user := range []string{"rep", "edge2", "other"} {
		evil := mustDial(t, u, withUser(user, user))
		evil.Publish(topic, 0, true, forged)
		evil.Publish(topic, 0, true, "")
		evil.Publish(topic, 1, true, forged) // MQTT 3.1.1: refused by disconnecting
		wantRefusal(t, b, logs, refPublish, "user="+user, "topic="+topic)
	}
	other := mustDial(t, u, withUser("other", "other"))
	other.sub(t, wire.RecordTopic("site2/blacklist"), 1)
	for _, f := range []string{topic, wire.RecordPrefix + "#"} {
		tok := other.Subscribe(f, 1, nil)
		if err := wait(t, tok, "subscribe "+f); err != nil {
			t.Fatal(err)
		}
		if code := tok.(*paho.SubscribeToken).Result()[f]; code < 0x80 {
			t.Errorf("reporter of site2/blacklist subscribing to %s: granted (%#x), want refused", f, code)
		}
	}
	late := mustDial(t, u, withUser("admin", "admin"))
	if got := drain(t, late, topic); got[topic] != m.payload {
		t.Errorf("record after the attacks: %q, want the keeper's %q", got[topic], m.payload)
	}
	for len(watch.msgs) > 0 { // the record may have come twice: retained and live
		if m2 := <-watch.msgs; m2.payload != m.payload {
			t.Errorf("host got %s %q after the attacks, want the keeper's record only", m2.topic, m2.payload)
		}
	}
}

// TestAttackClientIDTakeover: another login connecting with a host's client
// id is refused, while the host is connected and while its persistent
// session waits for it; the host keeps its session.
func TestAttackClientIDTakeover(t *testing.T) {
	b, u, logs := fleet(t, Limits{})
	victim := mustDial(t, u, withUser("edge1", "edge1"), withSession("vallum-victim"))
	victim.sub(t, "blacklist/#", 1)

	for _, user := range []string{"edge2", "rep", "admin"} {
		if _, err := dial(t, u, withUser(user, user), withSession("vallum-victim")); err == nil {
			t.Errorf("%s connected with edge1's client id, want refused", user)
		}
	}
	wantRefusal(t, b, logs, refClientID, "user=edge2", "client=vallum-victim", "belongs to user edge1")
	if !victim.IsConnectionOpen() {
		t.Fatal("the victim was disconnected by the attempts")
	}
	rep := mustDial(t, u, withUser("rep", "rep"))
	rep.pub(t, "blacklist/add", 1, false, "192.0.2.1")
	if m := victim.until(t, "blacklist/add", 5*time.Second); m.payload != "192.0.2.1" {
		t.Errorf("victim got %q, want the ban", m.payload)
	}

	// Offline, its session still belongs to it.
	victim.Disconnect(100)
	if _, err := dial(t, u, withUser("edge2", "edge2"), withSession("vallum-victim")); err == nil {
		t.Error("edge2 connected with the offline edge1's client id, want refused")
	}
	n := inflight(b, "vallum-victim")
	rep.pub(t, "blacklist/add", 1, false, "192.0.2.2")
	waitQueued(b, "vallum-victim", n+1) // the event and the keeper's state
	back := mustDial(t, u, withUser("edge1", "edge1"), withSession("vallum-victim"))
	for m := back.until(t, "blacklist/add", 5*time.Second); m.payload != "192.0.2.2"; m = back.until(t, "blacklist/add", 5*time.Second) {
		// an earlier ban may come again (not acknowledged before the disconnect)
	}
	// The same user may take its own session over (a restarted bridge).
	mustDial(t, u, withUser("edge1", "edge1"), withSession("vallum-victim"))
}

// TestAttackWill: a will is checked at CONNECT as a publish would be: a
// host's retained will on a ban topic (a ban, or an unban of an admin's
// ban) and a reporter's on another list are refused; a reporter's valid
// will on its own list is accepted. The admin's ban stays.
func TestAttackWill(t *testing.T) {
	b, u, logs := fleet(t, Limits{})
	admin := mustDial(t, u, withUser("admin", "admin"))
	admin.pub(t, "blacklist/ban/192.0.2.9", 1, true, `{"at":1700000000000}`)

	withWill := func(topic, payload string, retain bool) clientOpt {
		return func(o *paho.ClientOptions) { o.SetWill(topic, payload, 1, retain) }
	}
	for _, tt := range []struct{ user, topic, payload string }{
		{"edge2", "blacklist/ban/192.0.2.10", `{"at":1700000000000}`},
		// Lift the admin's ban with an expired state (mochi itself refuses
		// a will without payload).
		{"edge2", "blacklist/ban/192.0.2.9", `{"at":1000,"expires":2000}`},
		{"other", "blacklist/ban/192.0.2.9", `{"at":1000,"expires":2000}`},
		{"rep", "blacklist/ban/junk", strings.Repeat("x", 3000)},
	} {
		if _, err := dial(t, u, withUser(tt.user, tt.user), withWill(tt.topic, tt.payload, true)); err == nil {
			t.Errorf("%s connected with a retained will on %s, want refused", tt.user, tt.topic)
		}
	}
	wantRefusal(t, b, logs, refWill, "user=edge2", "topic=blacklist/ban/192.0.2.10")
	mustDial(t, u, withUser("rep", "rep"), withWill("blacklist/ban/192.0.2.11", `{"at":1700000000000}`, true))

	late := mustDial(t, u, withUser("admin", "admin"))
	want := map[string]string{"blacklist/ban/192.0.2.9": `{"at":1700000000000}`}
	if got := drain(t, late, "blacklist/ban/#"); !maps.Equal(got, want) {
		t.Errorf("retained states %v, want only the admin's ban %v", got, want)
	}
}

// TestAttackStateJunk: the ban state topics hold only canonical
// ROOT/ban/PREFIX topics with a valid state of at most 1 KiB; retained
// messages are refused elsewhere. Over MQTT 3.1.1 and 5.
func TestAttackStateJunk(t *testing.T) {
	b, u, logs := fleet(t, Limits{})
	rep := mustDial(t, u, withUser("rep", "rep"))
	valid := `{"at":1700000000000}`
	for _, p := range []struct{ topic, payload string }{
		{"blacklist/ban/junk/1", valid},
		{"blacklist/ban/192.0.2.1/32", valid},
		{"blacklist/ban/::ffff:192.0.2.1", valid},
		{"blacklist/ban/192.0.2.2", strings.Repeat("x", 3<<20)},
		{"blacklist/ban/192.0.2.3", `{"at":1700000000000,"reason":"` + strings.Repeat("y", 1100) + `"}`},
		{"blacklist/ban/192.0.2.4", "not json"},
		{"blacklist/add", "192.0.2.5"}, // retained event: refused too
	} {
		rep.pub(t, p.topic, 1, true, p.payload) // 3.1.1: acknowledged and dropped
	}
	port := u[strings.LastIndexByte(u, ':')+1:]
	out, _ := exec.Command("mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port, "-u", "rep", "-P", "rep",
		"-q", "1", "-r", "-t", "blacklist/ban/junk/2", "-m", valid).CombinedOutput()
	if !strings.Contains(strings.ToLower(string(out)), "payload format invalid") {
		t.Errorf("mosquitto_pub -V mqttv5 of junk state: %q, want a refusal (payload format invalid)", out)
	}
	rep.pub(t, "blacklist/ban/192.0.2.6", 1, true, valid)

	late := mustDial(t, u, withUser("admin", "admin"))
	got := drain(t, late, "#")
	for topic := range got { // the keeper's records, manifests and chunks of its lists
		if strings.HasPrefix(topic, wire.RecordPrefix) || strings.HasPrefix(topic, wire.ManifestPrefix) || strings.HasPrefix(topic, wire.ChunkPrefix) {
			delete(got, topic)
		}
	}
	if len(got) != 1 || got["blacklist/ban/192.0.2.6"] != valid {
		for topic, p := range got {
			t.Errorf("retained %s (%d bytes), want only the valid state blacklist/ban/192.0.2.6", topic, len(p))
		}
	}
	wantRefusal(t, b, logs, refState, "user=rep", "topic=blacklist/ban/junk/1")
	wantRefusal(t, b, logs, refRetain, "topic=blacklist/add")
}

// TestAttackRetainedQuota: one user's retained messages stop at its quota;
// an unban gives room back; another user is not affected.
func TestAttackRetainedQuota(t *testing.T) {
	b, u, logs := fleet(t, Limits{MaxRetained: 3})
	rep := mustDial(t, u, withUser("rep", "rep"))
	state := func(i int) string { return fmt.Sprintf(`{"at":1700000000000,"reason":"r%d"}`, i) }
	for i := 1; i <= 5; i++ {
		rep.pub(t, "blacklist/ban/192.0.2."+strconv.Itoa(i), 1, true, state(i))
	}
	rep.pub(t, "blacklist/ban/192.0.2.1", 1, true, state(9)) // a replacement fits
	rep.pub(t, "blacklist/ban/192.0.2.2", 1, true, "")       // an unban frees one
	rep.pub(t, "blacklist/ban/192.0.2.7", 1, true, state(7))
	want := map[string]string{"blacklist/ban/192.0.2.1": state(9), "blacklist/ban/192.0.2.3": state(3), "blacklist/ban/192.0.2.7": state(7)}
	late := mustDial(t, u, withUser("admin", "admin"))
	if got := drain(t, late, "blacklist/ban/#"); !maps.Equal(got, want) {
		t.Errorf("retained %v, want the 3 of the quota %v", got, want)
	}
	wantRefusal(t, b, logs, refRetainedQuota, "user=rep", "topic=blacklist/ban/192.0.2.4")
}

// TestAttackSubscriptionsAndTopics: a subscription flood stops at the
// client's quota; a deep or long topic is refused.
func TestAttackSubscriptionsAndTopics(t *testing.T) {
	b, u, logs := fleet(t, Limits{MaxSubscriptions: 10})
	c := mustDial(t, u, withUser("edge1", "edge1"))
	filters := map[string]byte{}
	for i := range 50 {
		filters["blacklist/x"+strconv.Itoa(i)] = 0
	}
	tok := c.SubscribeMultiple(filters, nil)
	if err := wait(t, tok, "subscribe 50"); err != nil {
		t.Fatal(err)
	}
	granted := 0
	for _, code := range tok.(*paho.SubscribeToken).Result() {
		if code < 0x80 {
			granted++
		}
	}
	if granted != 10 {
		t.Errorf("granted %d of 50 subscriptions, want 10 (the quota)", granted)
	}
	wantRefusal(t, b, logs, refSubscriptions, "user=edge1")

	deep := "blacklist" + strings.Repeat("/a", 20000)
	c = mustDial(t, u, withUser("edge1", "edge1"))
	tok = c.Subscribe(deep, 0, nil)
	if err := wait(t, tok, "subscribe deep"); err == nil && tok.(*paho.SubscribeToken).Result()[deep] < 0x80 {
		t.Error("20,001-level subscription granted, want refused")
	}
	wantRefusal(t, b, logs, refTopic, "user=edge1", "40009 bytes")
	deep = "blacklist" + strings.Repeat("/a", 40)
	tok = c.Subscribe(deep, 0, nil)
	if err := wait(t, tok, "subscribe deep"); err == nil && tok.(*paho.SubscribeToken).Result()[deep] < 0x80 {
		t.Error("41-level subscription granted, want refused")
	}
	wantRefusal(t, b, logs, refTopic, "user=edge1", "41 levels")
	rep := mustDial(t, u, withUser("rep", "rep"))
	rep.Publish("blacklist/"+strings.Repeat("b", 2000), 0, false, "x")
	wantRefusal(t, b, logs, refTopic, "user=rep", "2010 bytes")
}

// TestAttackHalfOpen: connections that never send CONNECT are closed at
// the deadline, one announcing a huge CONNECT at once, and one address
// holds at most MaxConnsPerAddr connections.
func TestAttackHalfOpen(t *testing.T) {
	b, u, logs := fleet(t, Limits{ConnectTimeout: 500 * time.Millisecond, MaxConnsPerAddr: 20})
	addr := strings.TrimPrefix(u, "tcp://")
	var conns []net.Conn
	for range 30 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	closedBy := func(c net.Conn, within time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(within))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF || err != nil && !isTimeout(err)
	}
	for i, c := range conns[20:] { // over the per-address limit: closed at once
		if !closedBy(c, 2*time.Second) {
			t.Errorf("connection %d over the per-address limit still open", 20+i)
		}
	}
	for i, c := range conns[:20] {
		if !closedBy(c, 10*time.Second) {
			t.Errorf("half-open connection %d not closed after the CONNECT deadline", i)
		}
	}
	wantRefusal(t, b, logs, refConnsPerAddr, "remote=127.0.0.1")
	wantRefusal(t, b, logs, refConnectTime)

	// A CONNECT announcing 4 MiB is refused before any of it is read.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte{0x10, 0x80, 0x80, 0x80, 0x02})
	if !closedBy(c, 2*time.Second) {
		t.Error("a connection announcing a 4 MiB CONNECT is still open")
	}
	wantRefusal(t, b, logs, refConnectSize)
	// And the broker still serves.
	mustDial(t, u, withUser("rep", "rep"))
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestAttackWebSocketHost: a page whose name was rebound to the broker's
// address sends its own name as Host (and a matching Origin, which passes
// the same-origin check): refused. The listener's own address is served,
// and an anonymous browser client on loopback is no admin.
func TestAttackWebSocketHost(t *testing.T) {
	b := start(t, Options{Listeners: []Listener{local(KindWS), local(KindTCP)}})
	addr := strings.TrimPrefix(url(t, b, KindWS), "ws://")
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	upgrade := func(host string) int {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n", host, host)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	for _, host := range []string{"attacker.example:" + port, "attacker.example", "10.1.2.3:" + port, "127.0.0.1:1"} {
		if code := upgrade(host); code != http.StatusForbidden {
			t.Errorf("upgrade with Host %s: status %d, want 403", host, code)
		}
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		if code := upgrade(host); code != http.StatusSwitchingProtocols {
			t.Errorf("upgrade with Host %s: status %d, want 101", host, code)
		}
	}
	if n := b.Stats().Refused[refWSHost]; n != 4 {
		t.Errorf("ws_host refusals counted: %d, want 4", n)
	}
	// Anonymous over TCP on loopback: the local admin. Over WebSocket: no.
	mustDial(t, url(t, b, KindTCP))
	if _, err := dial(t, url(t, b, KindWS)); err == nil {
		t.Error("an anonymous WebSocket client on a loopback broker connected, want refused (a browser is no admin)")
	}
}

// TestQoS2: vallumd's fail2ban action publishes with mosquitto_pub -q 2;
// over MQTT 3.1.1 and 5 the ban arrives and the keeper turns it into state.
func TestQoS2(t *testing.T) {
	_, u, _ := fleet(t, Limits{})
	host := mustDial(t, u, withUser("edge1", "edge1"))
	host.sub(t, "blacklist/#", 1)
	port := u[strings.LastIndexByte(u, ':')+1:]
	for i, v := range []string{"mqttv311", "mqttv5"} {
		ip := "192.0.2." + strconv.Itoa(20+i)
		out, err := exec.Command("mosquitto_pub", "-V", v, "-h", "127.0.0.1", "-p", port, "-u", "rep", "-P", "rep",
			"-q", "2", "-t", "blacklist/add", "-m", ip).CombinedOutput()
		if err != nil {
			t.Errorf("mosquitto_pub -V %s -q 2: %v, %q", v, err, out)
		}
		if m := host.until(t, "blacklist/ban/"+ip, 5*time.Second); m.payload == "" {
			t.Errorf("%s: state of %s empty, want the keeper's ban", v, ip)
		}
	}
}

// TestAttackClientIDAfterRestart: after a broker restart, the persistent
// session restored from the store still belongs to its user: another login
// that connects first with its client id is refused.
func TestAttackClientIDAfterRestart(t *testing.T) {
	users := writeUsers(t, fleetUsers, "edge1", "edge2", "rep", "other", "admin")
	o := Options{Listeners: []Listener{local(KindTCP)}, UsersFile: users, Lists: []string{"blacklist"}, DataDir: t.TempDir(), Logger: testLogger(t)}
	b1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runBroker(t, b1)
	victim := mustDial(t, url(t, b1, KindTCP), withUser("edge1", "edge1"), withSession("vallum-victim"))
	victim.sub(t, "blacklist/#", 1)
	victim.Disconnect(50)
	stop1()

	b2 := start(t, o)
	u := url(t, b2, KindTCP)
	if _, err := dial(t, u, withUser("edge2", "edge2"), withSession("vallum-victim")); err == nil {
		t.Error("edge2 took the restored session of edge1, want refused")
	}
	mustDial(t, u, withUser("rep", "rep")).pub(t, "blacklist/add", 1, false, "192.0.2.3")
	waitQueued(b2, "vallum-victim", 1) // the event and the keeper's state
	back := mustDial(t, u, withUser("edge1", "edge1"), withSession("vallum-victim"))
	if m := back.until(t, "blacklist/add", 5*time.Second); m.payload != "192.0.2.3" {
		t.Errorf("edge1 back on its restored session got %q, want the ban queued while away", m.payload)
	}
}
