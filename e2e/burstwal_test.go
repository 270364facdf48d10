//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/hooks/storage"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/store"
	"github.com/vallum/vallum/internal/wire"
)

// TestHubKilledMidBurst: `vallum import` of 20,000 addresses into the
// embedded hub, a del of one of them, and the hub SIGKILLed at once, before
// its keeper cut the import (its store holds no manifest of it yet: the
// test checks), then started again on the same data dir. The import's
// bans were acknowledged, so they are the list: a host that joins then
// gets every one of them, and the address unbanned before the kill stays
// unbanned; the host that was online, reconnected, holds the same.
func TestHubKilledMidBurst(t *testing.T) {
	const n = 20_000
	l, dir := newLab(t)
	b, _ := chunkHubIn(t, l, dir, true)
	host, late := addHost(t, l, "host"), addHost(t, l, "late")
	startBridge(t, host, b, dir)
	var feed strings.Builder
	for i := range n {
		feed.WriteString(banAddr(i).String() + "\n")
	}
	path := filepath.Join(dir, "feed.netset")
	if err := os.WriteFile(path, []byte(feed.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	unbanned := banAddr(77).String()
	c := must[mqtt.Client](t)(b.h.Connect(hubPort, mqtt.NewClientOptions().SetClientID("unbanner")))
	out := importFrom(t, host, b, dir, "import", root, path, "--timeout", "1d")
	tok := c.Publish(root+"/del", 1, false, unbanned)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("del %s: %v", unbanned, tok.Error())
	}
	b.proc.Kill()
	c.Disconnect(0)
	t.Logf("import: %s", strings.TrimSpace(out))

	data := datadir.Dir(filepath.Join(dir, "hub-store"))
	listed, journaled := killedStore(t, data.Store())
	if listed >= n-1 || journaled == 0 {
		t.Fatalf("killed hub's store: a manifest of %d bans, %d journal entries; want the kill before the cut (fewer than %d listed) and the burst journaled",
			listed, journaled, n-1)
	}
	t.Logf("killed hub's store: a manifest of %d bans, %d journal entries", listed, journaled)

	args := []string{"broker", "--listen", fmt.Sprintf("0.0.0.0:%d", hubPort), "--allow-anonymous", "-t", root,
		"--data-dir", string(data), "--legacy-state=false"}
	b.proc = must[*lab.Proc](t)(b.h.Start(dir, vallumBin, args...))
	t.Cleanup(func() { b.proc.Kill() })
	if err := b.h.WaitPort(hubPort, 20*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, b.proc.Output())
	}
	err := lab.Eventually(time.Minute, func() (bool, string) {
		cc := readCompact(t, b)
		return len(cc.list) == n-1 && cc.man != nil && cc.man.Entries == n-1, cc.String()
	})
	if err != nil {
		t.Errorf("the restarted hub does not list the import less the unban: %v\n%s", err, logLines(b.proc.Output(), "journal", "level=WARN", "level=ERROR"))
	}
	startBridge(t, late, b, dir)
	for _, h := range []*lab.Host{late, host} {
		waitEntries(t, h, root, n-1, time.Minute)
		if members := must[[]string](t)(h.Prefixes(root)); contains(members, unbanned) {
			t.Errorf("%s holds %s, unbanned before the kill", h.Name, unbanned)
		}
	}
	t.Logf("restarted hub: %s", logLines(b.proc.Output(), "journal"))
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v || x == v+"/32" {
			return true
		}
	}
	return false
}

// killedStore reads a copy of a dead hub's store: how many bans its
// manifest lists, and how many journal entries it holds
// (broker/journal.go).
func killedStore(t *testing.T, path string) (listed, journaled int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "store.log")
	if err := os.WriteFile(cp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	kv, err := store.Open(cp, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	if v, ok, _ := kv.Get(storage.RetainedKey + "_" + wire.ManifestTopic(root)); ok {
		var m storage.Message
		if m.UnmarshalBinary(v) == nil {
			if man, err := wire.DecodeManifest(m.Payload); err == nil {
				listed = man.Entries
			}
		}
	}
	_ = kv.Scan("vallum-journal_", func(string, []byte) error { journaled++; return nil })
	return listed, journaled
}
