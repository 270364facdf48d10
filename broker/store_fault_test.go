package broker

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/tmpfs"
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
	payload := bridge.EncodeState(bridge.State{At: time.Now(), Origin: "test"})

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
