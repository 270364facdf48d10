package broker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/datadir"
)

// TestRestartKeepsState: retained bans and the QoS 1 messages queued for
// an offline persistent session survive a broker restart.
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir, Logger: testLogger(t)}
	b1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runBroker(t, b1)
	u := url(t, b1, KindTCP)

	host := mustDial(t, u, withSession("host1"))
	host.sub(t, "blacklist/#", 1)
	host.Disconnect(50) // offline from now on: the broker queues for it

	pub := mustDial(t, u)
	const n = 20
	var want []string
	for i := range n {
		p := "192.0.2." + strconv.Itoa(i)
		pub.pub(t, "blacklist/add", 1, false, p)
		want = append(want, p)
	}
	pub.pub(t, "blacklist/ban/198.51.100.1", 1, true, `{"at":1}`)
	pub.Disconnect(50)
	stop1()

	b2 := start(t, o)
	u = url(t, b2, KindTCP)
	fresh := mustDial(t, u)
	fresh.sub(t, "blacklist/ban/#", 1)
	if m := fresh.next(t, 5*time.Second); m.topic != "blacklist/ban/198.51.100.1" || !m.retain {
		t.Errorf("after restart a new subscriber got %+v, want the retained ban", m)
	}

	host = mustDial(t, u, withSession("host1"))
	var got []string
	for len(got) < n+1 { // the queued events, and the state published while offline
		m := host.next(t, 5*time.Second)
		if m.topic == "blacklist/add" {
			got = append(got, m.payload)
		} else {
			got = append(got, "state:"+m.topic)
		}
	}
	want = append(want, "state:blacklist/ban/198.51.100.1")
	slices.Sort(got) // mochi redelivers a session's queue out of order
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("persistent session after restart got %q, want %q", got, want)
	}
	select {
	case m := <-host.msgs:
		t.Errorf("unexpected extra message after restart: %+v", m)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestMain lets a test run this binary as a second process that starts a
// broker on a data dir (BROKER_TEST_SECOND) and prints what New said.
func TestMain(m *testing.M) {
	if dir := os.Getenv("BROKER_TEST_SECOND"); dir != "" {
		b, err := New(Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir})
		if err != nil {
			fmt.Println(err)
			os.Exit(3)
		}
		fmt.Println("started")
		_ = b.srv.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSecondBrokerOnDataDir: a second broker on a data dir in use, in
// another process or in this one, fails at once with an error that names
// the holder's pid, and leaves the store alone: the first keeps running,
// and every ban it acknowledged is there after its restart.
func TestSecondBrokerOnDataDir(t *testing.T) {
	dir := t.TempDir()
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir, Logger: testLogger(t)}
	b1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runBroker(t, b1)
	defer stop1()
	u := url(t, b1, KindTCP)
	publishBans(t, u, 300)
	path := datadir.Dir(dir).Store()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st0, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BROKER_TEST_SECOND="+dir)
	out, err := cmd.Output()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("second process: %v, output %q; want it refused", err, out)
	}
	if want := fmt.Sprintf("pid %d", os.Getpid()); !strings.Contains(string(out), want) {
		t.Errorf("second process said %q, want it to name the holder (%s)", out, want)
	}
	// The same in one process, on the first broker's own port: the lock
	// comes first, so the store is not touched before the port fails.
	o2 := o
	o2.Listeners = []Listener{{Kind: KindTCP, Addr: strings.TrimPrefix(u, "tcp://")}}
	if b2, err := New(o2); err == nil {
		_ = b2.srv.Close()
		t.Fatal("a second broker on the data dir started")
	} else if le := (*datadir.LockedError)(nil); !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Errorf("second broker: %v, want a lock error naming pid %d", err, os.Getpid())
	}
	// The first broker goes on appending (sessions, $SYS), nothing else.
	after, _ := os.ReadFile(path)
	if st, err := os.Stat(path); err != nil || !os.SameFile(st0, st) || !bytes.HasPrefix(after, before) {
		t.Errorf("the failed starts changed the store (%d bytes before, %d after, same file: %v)",
			len(before), len(after), err == nil && os.SameFile(st0, st))
	}

	publishBans(t, u, 400) // the first broker still stores
	stop1()
	b3 := start(t, o)
	waitRetained(t, b3, 400)
	if got := len(b3.srv.Topics.Messages("blacklist/ban/#")); got != 400 {
		t.Errorf("after restart %d bans retained, want the 400 acknowledged", got)
	}
}

// TestStoreMovedFromOldPath: vallum used to keep the store in
// DATA_DIR/broker/broker/store.log. An upgrade moves it to
// DATA_DIR/broker/store.log and keeps every ban.
func TestStoreMovedFromOldPath(t *testing.T) {
	dir := t.TempDir()
	// The old daemon passed DATA_DIR/broker, which the broker extended
	// with broker/ again: a broker on that folder writes the old layout.
	old := Options{Listeners: []Listener{local(KindTCP)}, DataDir: datadir.Dir(dir).Broker(), Logger: testLogger(t)}
	b1, err := New(old)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runBroker(t, b1)
	publishBans(t, url(t, b1, KindTCP), 50)
	stop1()
	oldPath := filepath.Join(dir, "broker", "broker", "store.log")
	if _, err := os.Stat(oldPath); err != nil {
		t.Fatalf("no store at the old path: %v", err)
	}

	b2 := start(t, Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir, Logger: testLogger(t)})
	waitRetained(t, b2, 50)
	if got := len(b2.srv.Topics.Messages("blacklist/ban/#")); got != 50 {
		t.Errorf("after the move %d bans retained, want 50", got)
	}
	if _, err := os.Stat(datadir.Dir(dir).Store()); err != nil {
		t.Errorf("no store at %s: %v", datadir.Dir(dir).Store(), err)
	}
	if _, err := os.Stat(oldPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old store is still at %s: %v", oldPath, err)
	}
}
