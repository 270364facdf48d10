//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

// TestHandMadeEntryIsNeverTouched: an operator's hand-made entries
// (permanent, no vallum comment), one added while vallum runs and one
// while it is stopped, then a 3 s shared ban of both addresses, its expiry
// (the keeper clears the state, an unban for every host), a legacy del
// event and a `vallum unban`: the entries stay permanent and uncommented,
// in ipsets and in nftables sets, while vallum's own bans come and go.
func TestHandMadeEntryIsNeverTouched(t *testing.T) {
	const a, b = "203.0.113.60", "203.0.113.61"
	for _, backend := range []string{"ipset", "nft"} {
		t.Run(backend, func(t *testing.T) {
			l, dir := newLab(t)
			h := addHost(t, l, "h")
			args := []string{"-t", root, "--backend", backend}
			handAdd := func(addr string) {
				t.Helper()
				if backend == "ipset" {
					must[string](t)(h.Exec("ipset", "add", root, addr))
				} else {
					must[string](t)(h.Exec("nft", "add", "element", "inet", "vallum", root, "{ "+addr+" }"))
				}
			}
			members := func() map[string]lab.Member {
				t.Helper()
				var ms []lab.Member
				var err error
				if backend == "ipset" {
					ms, err = h.Members(root)
				} else {
					ms, err = h.NftMembers("inet", "vallum", root)
				}
				if err != nil {
					t.Fatal(err)
				}
				m := map[string]lab.Member{}
				for _, x := range ms {
					m[x.Prefix] = x
				}
				return m
			}
			fences := 0
			// fence bans one more address and waits for it: every message
			// published before it has been applied.
			fence := func() {
				t.Helper()
				fences++
				addr := "192.0.2." + strconv.Itoa(fences)
				must[string](t)(h.Exec(vallumBin, "ban", root, addr, "--timeout", "1h"))
				if err := lab.Eventually(20*time.Second, func() (bool, string) {
					_, ok := members()[addr]
					return ok, addr + " never reached the set"
				}); err != nil {
					t.Fatal(err)
				}
			}
			wantHandMade := func(when string) {
				t.Helper()
				m := members()
				for _, addr := range []string{a, b} {
					if e, ok := m[addr]; !ok || e.Timeout != 0 || e.Comment != "" {
						t.Fatalf("%s: hand-made %s = %+v (present %v), want it permanent and without comment", when, addr, e, ok)
					}
				}
			}

			v := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, args...))
			handAdd(a)
			if err := v.Stop(); err != nil {
				t.Fatal(err)
			}
			handAdd(b)
			v = must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, args...))
			for _, addr := range []string{a, b} {
				must[string](t)(h.Exec(vallumBin, "ban", root, addr, "--timeout", "3"))
			}
			fence()
			wantHandMade("after a 3 s shared ban")
			if e := members()["192.0.2.1"]; e.Comment != "vallum" || e.Timeout < 3000 {
				t.Errorf("vallum's own ban = %+v, want comment vallum and about 3600 s", e)
			}
			// The keeper clears the expired state: an unban for every host.
			if err := lab.Eventually(30*time.Second, func() (bool, string) {
				out, err := h.Exec(vallumBin, "list", root)
				return err == nil && !strings.Contains(out, a) && !strings.Contains(out, b), "the shared bans are still listed:\n" + out
			}); err != nil {
				t.Fatal(err)
			}
			fence()
			wantHandMade("after the shared ban expired")

			pub := must[*lab.Publisher](t)(h.NewPublisher(hubPort))
			pub.Publish(root+"/del", false, []byte(a+"\n"+b)) // a legacy del
			if err := pub.Close(); err != nil {
				t.Fatal(err)
			}
			must[string](t)(h.Exec(vallumBin, "unban", root, a))
			must[string](t)(h.Exec(vallumBin, "unban", root, "192.0.2.1")) // vallum's own: removed
			fence()
			wantHandMade("after a legacy del and an unban")
			if _, ok := members()["192.0.2.1"]; ok {
				t.Error("vallum's own ban is still in the set after its unban")
			}
			if v.Exited() {
				t.Fatalf("vallum exited:\n%s", v.Output())
			}
		})
	}
}
