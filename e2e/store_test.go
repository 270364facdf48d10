//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/tmpfs"
	"github.com/vallum/vallum/internal/wire"
)

func storeBan(i int) string { return "blacklist/ban/" + storeAddr(i) }

func storeAddr(i int) string { return fmt.Sprintf("198.18.%d.%d", i>>8&255, i&255) }

// TestDataDirLocked: while vallum runs, a second vallum on its data dir (a
// whole daemon, a broker alone, a bridge alone) exits 1 at once and names
// the first one's pid; the first one's store is not touched, and it keeps
// every ban across a restart.
func TestDataDirLocked(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "hub")
	data := filepath.Join(dir, "hub-data")
	first := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-t", "blacklist", "--listen", "127.0.0.1:1883"))
	pub := must[*lab.Publisher](t)(h.NewPublisher(1883))
	payload := wire.EncodeState(wire.State{At: time.Now(), Origin: "e2e"})
	for i := range 200 {
		pub.Publish(storeBan(i), true, payload)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(data, "broker", "store.log")
	before := must[[]byte](t)(os.ReadFile(store))
	st0 := must[os.FileInfo](t)(os.Stat(store))

	want := fmt.Sprintf("in use by another vallum (pid %d)", first.Pid())
	for _, args := range [][]string{
		{"--data-dir", data, "-t", "blacklist", "--listen", "127.0.0.1:1884"}, // a second daemon
		{"broker", "--data-dir", data, "--listen", "127.0.0.1:1885"},          // a broker alone
		{"--data-dir", data, "-h", "127.0.0.1", "-t", "blacklist"},            // a bridge alone
	} {
		cmd := h.Command(vallumBin, args...)
		out, err := runFor(cmd, 30*time.Second)
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(out, want) {
			t.Errorf("vallum %s: %v, output %q; want exit 1 and %q", strings.Join(args, " "), err, out, want)
		}
	}
	if first.Exited() {
		t.Fatalf("the first vallum ended: %s", first.Output())
	}
	after := must[[]byte](t)(os.ReadFile(store))
	if st, err := os.Stat(store); err != nil || !os.SameFile(st0, st) || !bytes.HasPrefix(after, before) {
		t.Errorf("the refused starts touched the store: %d bytes before, %d after", len(before), len(after))
	}

	if err := first.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-t", "blacklist", "--listen", "127.0.0.1:1883"))
	got := listed(t, h, "127.0.0.1", 1883)
	if len(got) != 200 {
		t.Errorf("after a restart %d bans retained, want 200", len(got))
	}
}

// TestStoreFullDiskHealthz: a hub whose data dir (a 2 MiB tmpfs) fills up
// refuses the bans it cannot store, says so on /healthz and in its
// metrics, and after a restart holds every ban it acknowledged, in the
// store and in its kernel set.
func TestStoreFullDiskHealthz(t *testing.T) {
	data := tmpfs.Mount(t, 2<<20) // first: unmounted after the lab's processes end
	l, dir := newLab(t)
	h := addHost(t, l, "hub")
	args := []string{"--data-dir", data, "-t", "blacklist", "--listen", "127.0.0.1:1883", "--metrics", "127.0.0.1:9101"}
	hub := must[*lab.Proc](t)(h.Start(dir, vallumBin, args...))
	if err := hub.WaitLog("subscribed and synced", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	payload := wire.EncodeState(wire.State{At: time.Now(), Origin: "e2e"})
	acked, refused := 0, 0
	var c mqtt.Client
	for i := 0; refused < 3 && i < 30_000; i++ {
		if c == nil {
			c = must[mqtt.Client](t)(h.Connect(1883, mqtt.NewClientOptions().SetClientID("full-"+strconv.Itoa(i)).
				SetAutoReconnect(false)))
		}
		tok := c.Publish(storeBan(i), 1, true, payload)
		if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
			acked++
			continue
		}
		refused++
		c.Disconnect(0)
		c = nil
	}
	t.Logf("%d bans acknowledged, then %d refused", acked, refused)
	if refused == 0 {
		t.Fatal("the disk never filled")
	}
	web := h.HTTPClient()
	if code, body := get(t, web, "http://127.0.0.1:9101/healthz"); code != 503 || !strings.Contains(body, "store") {
		t.Errorf("GET /healthz = %d %q on a full disk, want 503 naming the store", code, body)
	}
	m := must[map[string]float64](t)(h.Metrics(9101))
	if m["vallum_broker_store_ok"] != 0 || m["vallum_broker_store_refused_total"] < float64(refused) {
		t.Errorf("store_ok %v, store_refused_total %v; want 0 and at least %d", m["vallum_broker_store_ok"],
			m["vallum_broker_store_refused_total"], refused)
	}
	if !strings.Contains(hub.Output(), "level=ERROR") {
		t.Error("no ERROR in the log")
	}

	if err := hub.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	hub = must[*lab.Proc](t)(h.Start(dir, vallumBin, args...))
	if err := hub.WaitLog("subscribed and synced", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	got := listed(t, h, "127.0.0.1", 1883)
	for i := range acked {
		if _, ok := got[storeAddr(i)]; !ok {
			t.Errorf("acknowledged %s lost after the restart", storeBan(i))
			break
		}
	}
	err := lab.Eventually(30*time.Second, func() (bool, string) {
		n, err := h.SetCount("blacklist")
		return err == nil && n == acked, fmt.Sprintf("set blacklist holds %d (%v), want the %d acknowledged", n, err, acked)
	})
	if err != nil {
		t.Error(err)
	}
}

// runFor runs cmd and returns its output. It kills cmd after timeout: a
// second vallum that was not refused would run on.
func runFor(cmd *exec.Cmd, timeout time.Duration) (string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), errors.New("still running: not refused")
	}
}

// TestStoreSIGKILL: a hub killed (SIGKILL) while bans pour in keeps, after
// a restart, every ban it acknowledged: a crash of the process loses
// nothing (only a power cut loses up to the last 100 ms, which a test
// cannot cut).
func TestStoreSIGKILL(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "hub")
	args := []string{"-t", "blacklist", "--listen", "127.0.0.1:1883"}
	hub := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, args...))
	c := must[mqtt.Client](t)(h.Connect(1883, mqtt.NewClientOptions().SetClientID("killer").SetAutoReconnect(false)))
	payload := wire.EncodeState(wire.State{At: time.Now(), Origin: "e2e"})
	// 500 in flight: the broker is writing when the kill comes.
	type pending struct {
		i   int
		tok mqtt.Token
	}
	toks := make(chan pending, 500)
	go func() {
		defer close(toks)
		for i := 0; i < 60_000 && c.IsConnectionOpen(); i++ {
			toks <- pending{i, c.Publish(storeBan(i), 1, true, payload)}
		}
	}()
	var acked []int
	deadline := time.Now().Add(120 * time.Second)
	for p := range toks {
		if p.tok.WaitTimeout(time.Until(deadline)) && p.tok.Error() == nil {
			acked = append(acked, p.i)
		}
		if len(acked) == 3000 {
			hub.Kill()
		}
	}
	t.Logf("%d bans acknowledged before SIGKILL", len(acked))
	if len(acked) < 3000 || !hub.Exited() {
		t.Fatalf("%d acknowledged, hub exited %v", len(acked), hub.Exited())
	}
	must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, args...))
	got := listed(t, h, "127.0.0.1", 1883)
	lost := 0
	for _, i := range acked {
		if _, ok := got[storeAddr(i)]; !ok {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged bans lost after SIGKILL", lost, len(acked))
	}
}
