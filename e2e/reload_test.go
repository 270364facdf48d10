//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

// TestDestroyedSetComesBackWithAllBans: `ipset destroy` while vallum runs,
// without a signal: vallum notices, creates the set again and puts back
// every ban the broker holds, with its time left and its comment; and
// again when the next ban is what finds the set missing.
func TestDestroyedSetComesBackWithAllBans(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "h")
	v := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-t", root))
	pub := must[*lab.Publisher](t)(h.NewPublisher(hubPort))
	now := time.Now()
	for i := range 101 {
		pub.Publish(stateTopic(i), true, ban(i, now, now.Add(time.Hour)).Payload)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	want := addrs(0, 101)
	waitPrefixes(t, h, root, want...)

	must[string](t)(h.Exec("ipset", "destroy", root))
	waitPrefixes(t, h, root, want...)
	members := must[[]lab.Member](t)(h.Members(root))
	for _, m := range members {
		if m.Timeout < 3000 || m.Timeout > 3600 || m.Comment != "vallum" {
			t.Fatalf("after the set came back, %+v: want about 3600 s left and comment vallum", m)
		}
	}
	if err := v.WaitLog("removed behind vallum's back", 5*time.Second); err != nil {
		t.Error(err)
	}

	must[string](t)(h.Exec("ipset", "destroy", root))
	must[string](t)(h.Exec(vallumBin, "ban", root, "203.0.113.50", "--timeout", "1h"))
	waitPrefixes(t, h, root, addrs(0, 101, "203.0.113.50")...)
	if v.Exited() {
		t.Fatalf("vallum exited:\n%s", v.Output())
	}
}

// TestNftReloadPutsRulesBack: with --backend nft --nft-rules, a firewall
// reload (`nft flush ruleset`, then a flushed chain) removes vallum's
// table, sets and drop rules. Without a signal, vallum puts them back with
// every ban, and the banned address's packets are dropped again.
func TestNftReloadPutsRulesBack(t *testing.T) {
	l, dir := newLab(t)
	h, x, y := addHost(t, l, "h"), addHost(t, l, "x"), addHost(t, l, "y")
	v := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-t", root, "--backend", "nft", "--nft-rules"))
	for _, a := range []string{x.Addr4, x.Addr6} {
		must[string](t)(h.Exec(vallumBin, "ban", root, a, "--timeout", "1h"))
	}
	waitNft(t, h, root, x.Addr4)
	waitNft(t, h, root+"6", x.Addr6)
	for _, dst := range []string{h.Addr4, h.Addr6} {
		wantPing(t, x, dst, false)
	}
	for _, reload := range [][]string{
		{"nft", "flush", "ruleset"},
		{"nft", "flush", "chain", "inet", "vallum", "input"},
		{"nft", "delete", "table", "inet", "vallum"},
	} {
		must[string](t)(h.Exec(reload[0], reload[1:]...))
		waitNft(t, h, root, x.Addr4)
		waitNft(t, h, root+"6", x.Addr6)
		for _, dst := range []string{h.Addr4, h.Addr6} {
			waitDropped(t, x, dst, fmt.Sprint(reload))
			wantPing(t, y, dst, true)
		}
	}
	if v.Exited() {
		t.Fatalf("vallum exited:\n%s", v.Output())
	}
}

// waitDropped pings dst from src until a ping goes unanswered (vallum has
// put its rules back), at most 20 s.
func waitDropped(t *testing.T, src *lab.Host, dst, after string) {
	t.Helper()
	err := lab.Eventually(20*time.Second, func() (bool, string) {
		_, err := src.Exec("ping", "-c1", "-W1", dst)
		return err != nil, fmt.Sprintf("%s still reaches %s after %s", src.Name, dst, after)
	})
	if err != nil {
		t.Fatal(err)
	}
}
