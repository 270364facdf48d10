//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// TestCompactJoinMidBurst: a host joins while the list's keeper is in the
// middle of a burst of per-ban states (`vallum ban` from many places at
// once): it has cut some, holds the rest as state, and keeps cutting
// and deleting the states its cuts fold in while the host reads, and more
// states keep coming. On mosquitto with `vallum keeper` and on the
// embedded hub: the host's first sync ends with every ban made before it
// started, nothing lost to a cut or a deletion during the read, and says
// nothing at ERROR; once the burst is over, the host holds every ban.
func TestCompactJoinMidBurst(t *testing.T) {
	const first, more = 60_000, 40_000
	eachCompactBroker(t, true, func(t *testing.T, l *lab.Lab, b *compactHub, dir string) {
		h := addHost(t, l, "joiner")
		feed := func(p *lab.Publisher, from, to int) {
			for i := from; i < to; i++ {
				now := time.Now()
				st := wire.EncodeState(wire.State{At: now, Expires: now.Add(time.Hour), Reason: "sshd"})
				p.Publish(wire.StateTopic(root, bulk(i)), true, st)
			}
		}
		b.publish(t, func(p *lab.Publisher) { feed(p, 0, first) })
		err := lab.Eventually(120*time.Second, func() (bool, string) {
			m, ok := b.manifest(t, 2*time.Second)
			return ok && m.Entries >= first/2, fmt.Sprintf("manifest %v: %d entries", ok, m.Entries)
		})
		if err != nil {
			t.Fatalf("the keeper's first cuts: %v", err)
		}
		// The burst goes on while the host joins: the keeper takes in,
		// cuts and deletes as it reads.
		p := b.publisher(t)
		done := make(chan error, 1)
		go func() {
			feed(p, first, first+more)
			done <- p.Close()
		}()
		v := b.bridge(t, h, dir)
		if err := v.WaitLog("msg=synced", 120*time.Second); err != nil {
			t.Fatal(err)
		}
		// Every ban made before the host started is in its set once its
		// first sync is over (the reconciliation runs after the adds).
		members := must[[]string](t)(h.Prefixes(root))
		have := map[string]bool{}
		for _, m := range members {
			have[m] = true
		}
		var missing []string
		for i := range first {
			if !have[bulk(i).Addr().String()] && !have[bulk(i).String()] {
				missing = append(missing, bulk(i).Addr().String())
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s: after the host's first sync, %d of the %d bans made before it started are missing (set holds %d), %v ...",
				b.name(), len(missing), first, len(members), missing[:min(5, len(missing))])
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		waitSet(t, h, 60*time.Second, bulkAddrs(0, first+more))
		if out := v.Output(); strings.Contains(out, "level=ERROR") {
			t.Errorf("%s: the host logged errors:\n%s", b.name(), out)
		}
		t.Logf("%s: %s", b.name(), firstSynced(v.Output()))
	})
}

// firstSynced returns the host's log up to its first "synced" line, the
// lines about syncs only.
func firstSynced(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "sync") {
			b.WriteString(l + "\n")
		}
		if strings.Contains(l, "msg=synced") {
			break
		}
	}
	return b.String()
}
