package broker

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/tmpfs"
	"github.com/vallum/vallum/internal/wire"
)

// banTopic is the topic publishBans uses for its i-th ban.
func banTopic(i int) string {
	return fmt.Sprintf("blacklist/ban/10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
}

// TestStoreFlippedByte: one flipped byte in a record in the middle of
// store.log loses that ban only: the 5,000 others load, the damage is
// counted, and the damaged file is kept aside as it was.
func TestStoreFlippedByte(t *testing.T) {
	const n, victim = 5001, 2500
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: t.TempDir(), Logger: testLogger(t)}
	b1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runBroker(t, b1)
	publishBans(t, url(t, b1, KindTCP), n)
	stop1()

	path := datadir.Dir(o.DataDir).Store()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("RET_" + banTopic(victim))
	at := bytes.Index(b, key)
	if at < 0 || bytes.Count(b, key) != 2 { // the key, and the id in the value
		t.Fatalf("the record of %s is not in the file once", key)
	}
	b[at+len(key)+10] ^= 0x20 // in its value
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	b2 := start(t, o)
	waitRetained(t, b2, n-1)
	got := map[string]bool{}
	for _, pk := range b2.srv.Topics.Messages("blacklist/ban/#") {
		got[pk.TopicName] = true
	}
	for i := range n {
		if got[banTopic(i)] != (i != victim) {
			t.Errorf("after the flipped byte, %s retained: %v", banTopic(i), got[banTopic(i)])
		}
	}
	st, _ := b2.StoreStats()
	if st.Loaded.Records != 1 || st.Loaded.Tail {
		t.Errorf("damage counted %+v, want one record in the middle", st.Loaded)
	}
	if aside, err := os.ReadFile(st.Loaded.Aside); err != nil || !bytes.Equal(aside, b) {
		t.Errorf("damaged file kept aside at %q: %v, as it was: %v", st.Loaded.Aside, err, bytes.Equal(aside, b))
	}
}

// logBuffer collects a logger's output, for tests that check what is logged.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStoreFullDisk: on a 2 MiB data dir, bans are published one by one
// until the disk is full. Every ban acknowledged is stored: all are there
// after a restart. Those the store could not write get no PUBACK (an MQTT
// 3.1.1 publisher is disconnected), the broker logs an ERROR, counts the
// refusals, and reports the store unhealthy (which /healthz shows).
func TestStoreFullDisk(t *testing.T) {
	dir := tmpfs.Mount(t, 2<<20)
	logs := &logBuffer{}
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir, Lists: []string{"blacklist"},
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	b1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runBroker(t, b1)
	defer stop1()
	u := url(t, b1, KindTCP)
	payload := wire.EncodeState(wire.State{At: time.Now(), Origin: "test"})

	var acked []string
	var c *client
	refused, healthWhenRefused := 0, error(nil)
	for i := 0; refused < 5 && i < 20_000; i++ {
		if c == nil {
			c = mustDial(t, u)
		}
		tok := c.Publish(banTopic(i), 1, true, payload)
		if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			acked = append(acked, banTopic(i))
			continue
		}
		refused++
		healthWhenRefused = b1.StoreHealth()
		c.Disconnect(0)
		c = nil
	}
	t.Logf("%d bans acknowledged on a 2 MiB disk, then %d refused", len(acked), refused)
	if refused == 0 || len(acked) < 1000 {
		t.Fatalf("%d acknowledged, %d refused: want the disk to fill after a thousand or more", len(acked), refused)
	}
	if healthWhenRefused == nil {
		t.Error("StoreHealth was nil while publishes were refused")
	}
	st, _ := b1.StoreStats()
	if st.Refused < int64(refused) || st.WriteErrors == 0 {
		t.Errorf("store stats %+v, want %d refusals and write errors counted", st, refused)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "refusing publishes") {
		t.Errorf("no ERROR about refused publishes in the log:\n%.2000s", l)
	}
	stop1()

	b2 := start(t, Options{Listeners: o.Listeners, DataDir: dir, Lists: o.Lists, Logger: testLogger(t)})
	waitRetained(t, b2, int64(len(acked)))
	got := map[string]bool{}
	for _, pk := range b2.srv.Topics.Messages("blacklist/ban/#") {
		got[pk.TopicName] = true
	}
	lost := 0
	for _, topic := range acked {
		if !got[topic] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged bans lost after a restart", lost, len(acked))
	}
}

// mqtt5 is a bare MQTT 5 client, enough to read the reason code of a
// PUBACK (paho 1.5 speaks 3.1.1 only).
type mqtt5 struct {
	c net.Conn
	r *bufio.Reader
}

func dial5(t *testing.T, u string) *mqtt5 {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(u, "tcp://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &mqtt5{c: c, r: bufio.NewReader(c)}
	m.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "v5-publisher"}})
	if pk := m.read(t); pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 0 {
		t.Fatalf("MQTT 5 connect: %+v", pk)
	}
	return m
}

func (m *mqtt5) send(t *testing.T, pk packets.Packet) {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	}
	if err == nil {
		_, err = m.c.Write(buf.Bytes())
	}
	if err != nil {
		t.Fatal(err)
	}
}

// read reads one CONNACK or PUBACK.
func (m *mqtt5) read(t *testing.T) packets.Packet {
	t.Helper()
	_ = m.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hb, err := m.r.ReadByte()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	pk := packets.Packet{ProtocolVersion: 5}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		t.Fatal(err)
	}
	n, _, err := packets.DecodeLength(m.r)
	if err != nil {
		t.Fatal(err)
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(m.r, body); err != nil {
		t.Fatal(err)
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	default:
		t.Fatalf("unexpected packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// TestStoreFullDiskMQTT5: an MQTT 5 publisher whose retained ban cannot
// be stored gets a PUBACK with reason 0x97 (quota exceeded) and keeps its
// connection; so does a legacy event while the store fails (the keeper
// could not store its state); a sync marker passes; a ban gets a plain
// PUBACK once there is room again. The
// store stays reported failing for a while: on a full disk, small
// writes fit where large ones do not.
func TestStoreFullDiskMQTT5(t *testing.T) {
	dir := tmpfs.Mount(t, 1<<20)
	b := start(t, Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir, Lists: []string{"blacklist"},
		Logger: testLogger(t)})
	c := dial5(t, url(t, b, KindTCP))
	free := tmpfs.Fill(t, dir)
	big := bytes.Repeat([]byte("x"), 16<<10) // more than the slack in the store's last page
	send := func(id uint16, topic string, retain bool, payload []byte) packets.Packet {
		c.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: retain},
			ProtocolVersion: 5, TopicName: topic, PacketID: id, Payload: payload})
		return c.read(t)
	}
	for _, tc := range []struct {
		topic  string
		retain bool
		body   []byte
		want   byte
	}{
		{"blacklist/ban/192.0.2.1", true, big, packets.ErrQuotaExceeded.Code},        // the write fails
		{"blacklist/add", false, []byte("192.0.2.2"), packets.ErrQuotaExceeded.Code}, // the keeper could not store its state
		{"vallum/sync/host1", false, []byte("A1"), 0},                                // nothing to store
	} {
		if ack := send(1, tc.topic, tc.retain, tc.body); ack.PacketID != 1 || ack.ReasonCode != tc.want {
			t.Errorf("PUBACK to %s on a full disk: id %d reason %#x, want id 1 reason %#x", tc.topic, ack.PacketID, ack.ReasonCode, tc.want)
		}
	}
	if b.StoreHealth() == nil {
		t.Error("StoreHealth nil after a refused write")
	}
	if n := len(b.srv.Topics.Messages("blacklist/ban/#")); n != 0 {
		t.Errorf("%d bans retained after the refusals, want 0", n)
	}
	free()
	if ack := send(2, "blacklist/ban/192.0.2.1", true, big); ack.PacketID != 2 || ack.ReasonCode != 0 {
		t.Errorf("PUBACK once there is room: id %d reason %#x, want id 2 reason 0", ack.PacketID, ack.ReasonCode)
	}
	if b.StoreHealth() == nil {
		t.Error("StoreHealth nil right after a refused write: it holds a failure for a minute")
	}
}
