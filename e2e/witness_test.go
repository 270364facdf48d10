//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

// retain101 publishes 101 retained bans of an hour to h's embedded broker
// and waits until set holds them; it returns their addresses.
func retain101(t *testing.T, h *lab.Host, wait func(want ...string)) []string {
	t.Helper()
	pub := must[*lab.Publisher](t)(h.NewPublisher(hubPort))
	now := time.Now()
	for i := range 101 {
		pub.Publish(stateTopic(i), true, ban(i, now, now.Add(time.Hour)).Payload)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	want := addrs(0, 101)
	wait(want...)
	return want
}

// TestEmptiedIpsetIsRefilled: a firewall script empties vallum's set while
// it exists, faster than vallum's check of the sets can see it missing
// (`ipset destroy` then `ipset create` of the same set in one command, or
// `ipset flush`). Without a signal, every ban comes back, with its time
// left and its comment.
func TestEmptiedIpsetIsRefilled(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "h")
	v := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-t", root))
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(v.Output())
		}
	})
	want := retain101(t, h, func(want ...string) { waitPrefixes(t, h, root, want...) })

	create := ""
	for _, line := range strings.Split(must[string](t)(h.Exec("ipset", "save", root)), "\n") {
		if strings.HasPrefix(line, "create ") {
			create = line // the header vallum made, as it made it
		}
	}
	// Destroy and create in one `ipset restore`, as firewall scripts do: a
	// few microseconds apart, vallum's check cannot see the set missing.
	remake := "printf 'destroy %s\\n%s\\n' | ipset restore"
	for i, reload := range []string{
		fmt.Sprintf(remake, root, create),
		"ipset flush " + root,
		fmt.Sprintf(remake, root, "create "+root+" hash:ip timeout 0 comment"),
	} {
		// Counted in the same command, before vallum's next check.
		out := must[string](t)(h.Exec("sh", "-c", reload+"; ipset save "+root+" | grep -c ^add || true"))
		if n := strings.TrimSpace(out); n != "0" {
			t.Fatalf("after %q the set holds %s entries: the test did not empty it", reload, n)
		}
		waitPrefixes(t, h, root, want...)
		for _, m := range must[[]lab.Member](t)(h.Members(root)) {
			if m.Timeout < 3000 || m.Timeout > 3600 || m.Comment != "vallum" {
				t.Fatalf("after %q, %+v: want about 3600 s left and comment vallum", reload, m)
			}
		}
		if got := strings.Count(v.Output(), "lost vallum's entries"); got != i+1 {
			t.Errorf("after %q: %d warnings that the set lost vallum's entries, want %d", reload, got, i+1)
		}
	}
	if out := must[string](t)(h.Exec("ipset", "list", "-t", root)); !strings.Contains(out, "Type: hash:ip") {
		t.Errorf("the last reload did not make a hash:ip set:\n%s", out)
	}
	if v.Exited() {
		t.Fatalf("vallum exited:\n%s", v.Output())
	}
}

// fw4 is a table like OpenWrt's, with the sets vallum is told to use.
const fw4Table = `table inet fw4 {
	set blacklist { type ipv4_addr; flags timeout; }
	set blacklist6 { type ipv6_addr; flags timeout; }
}
`

// TestFw4RestartIsRefilled: vallum uses sets in a table it did not make
// (--nft-table 'inet fw4', --nft-rules), and `fw4 restart` deletes the
// table and makes it again with the same empty sets, in one transaction:
// the sets never go missing. Without a signal, every ban comes back and
// the banned host's packets are dropped again.
func TestFw4RestartIsRefilled(t *testing.T) {
	l, dir := newLab(t)
	h, x, y := addHost(t, l, "h"), addHost(t, l, "x"), addHost(t, l, "y")
	file := filepath.Join(dir, "fw4.nft")
	if err := os.WriteFile(file, []byte(fw4Table), 0o644); err != nil {
		t.Fatal(err)
	}
	must[string](t)(h.Exec("nft", "-f", file))
	v := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-t", root, "--backend", "nft", "--nft-table", "inet fw4", "--nft-rules"))
	want := retain101(t, h, func(want ...string) { waitFw4(t, h, root, want...) })
	for _, a := range []string{x.Addr4, x.Addr6} {
		must[string](t)(h.Exec(vallumBin, "ban", root, a, "--timeout", "1h"))
	}
	want4 := append(slices.Clone(want), x.Addr4)
	waitFw4(t, h, root, want4...)
	waitFw4(t, h, root+"6", x.Addr6)
	for _, dst := range []string{h.Addr4, h.Addr6} {
		wantPing(t, x, dst, false)
	}

	restart := filepath.Join(dir, "restart.nft")
	if err := os.WriteFile(restart, []byte("delete table inet fw4\n"+fw4Table), 0o644); err != nil {
		t.Fatal(err)
	}
	must[string](t)(h.Exec("nft", "-f", restart))
	waitFw4(t, h, root, want4...)
	waitFw4(t, h, root+"6", x.Addr6)
	for _, dst := range []string{h.Addr4, h.Addr6} {
		waitDropped(t, x, dst, "the table was made again")
		wantPing(t, y, dst, true)
	}
	for _, m := range must[[]lab.Member](t)(h.NftMembers("inet", "fw4", root)) {
		if m.Timeout < 3000 || m.Timeout > 3600 || m.Comment != "vallum" {
			t.Fatalf("after the table was made again, %+v: want about 3600 s left and comment vallum", m)
		}
	}
	if err := v.WaitLog("lost vallum's entries", 5*time.Second); err != nil {
		t.Error(err)
	}
	if v.Exited() {
		t.Fatalf("vallum exited:\n%s", v.Output())
	}
}

// waitFw4 polls a set of table inet fw4 until it holds exactly want.
func waitFw4(t *testing.T, h *lab.Host, set string, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := lab.Eventually(20*time.Second, func() (bool, string) {
		var err error
		if got, err = h.NftPrefixes("inet", "fw4", set); err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), ""
	})
	if err != nil {
		t.Fatalf("nft set %s in inet fw4 on %s = %d entries, want %d (%v)", set, h.Name, len(got), len(want), err)
	}
}
