//go:build e2e

package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

// TestNftBackendDropsBanned runs vallum with --backend nft --nft-rules on a
// host: a ban made anywhere puts the attacker in the host's nftables sets,
// and its packets (IPv4 and IPv6) are dropped while another host's are not;
// the unban lets them in again.
func TestNftBackendDropsBanned(t *testing.T) {
	l, dir := newLab(t)
	hub, h, x, y := addHost(t, l, "hub"), addHost(t, l, "h"), addHost(t, l, "x"), addHost(t, l, "y")
	must[*lab.Proc](t)(hub.StartMosquitto(dir, 1883, true))
	must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-t", "blacklist", "--backend", "nft", "--nft-rules"))
	for _, dst := range []string{h.Addr4, h.Addr6} {
		wantPing(t, x, dst, true)
	}
	for _, a := range []string{x.Addr4, x.Addr6} {
		must[string](t)(hub.Exec(vallumBin, "-h", "127.0.0.1", "ban", "blacklist", a, "--timeout", "1h"))
	}
	waitNft(t, h, "blacklist", x.Addr4)
	waitNft(t, h, "blacklist6", x.Addr6)
	for _, dst := range []string{h.Addr4, h.Addr6} {
		wantPing(t, x, dst, false)
		wantPing(t, y, dst, true)
	}
	for _, a := range []string{x.Addr4, x.Addr6} {
		must[string](t)(hub.Exec(vallumBin, "-h", "127.0.0.1", "unban", "blacklist", a))
	}
	waitNft(t, h, "blacklist")
	waitNft(t, h, "blacklist6")
	wantPing(t, x, h.Addr4, true)
}

// TestAutoBackend: with no native nftables firewall --backend auto takes
// ipset; where an inet table exists (as Debian's nftables.conf or fw4 make)
// it takes nft, and says why.
func TestAutoBackend(t *testing.T) {
	l, dir := newLab(t)
	a, b := addHost(t, l, "a"), addHost(t, l, "b")
	va := must[*lab.Proc](t)(a.StartVallum(dir, vallumBin, "-t", "blacklist", "--backend", "auto"))
	if err := va.WaitLog("backend auto: chose ipset", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	must[[]string](t)(a.Prefixes("blacklist")) // the ipset exists

	must[string](t)(b.Exec("nft", "add", "table", "inet", "filter"))
	vb := must[*lab.Proc](t)(b.StartVallum(dir, vallumBin, "-t", "blacklist", "--backend", "auto"))
	if err := vb.WaitLog("backend auto: chose nft", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	must[string](t)(b.Exec(vallumBin, "ban", "blacklist", "203.0.113.8"))
	waitNft(t, b, "blacklist", "203.0.113.8")
}

// wantPing checks that one ping from src reaches dst, or that it does not.
func wantPing(t *testing.T, src *lab.Host, dst string, reach bool) {
	t.Helper()
	_, err := src.Exec("ping", "-c1", "-W1", dst)
	if (err == nil) != reach {
		t.Fatalf("ping %s -> %s: reached=%v, want %v", src.Name, dst, err == nil, reach)
	}
}

// waitNft polls the host's nftables set in vallum's table until it holds
// exactly want.
func waitNft(t *testing.T, h *lab.Host, set string, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := lab.Eventually(20*time.Second, func() (bool, string) {
		var err error
		if got, err = h.NftPrefixes("inet", "vallum", set); err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want) || len(got) == 0 && len(want) == 0, ""
	})
	if err != nil {
		t.Fatalf("nft set %s on %s = %v, want %v (%v)", set, h.Name, got, want, err)
	}
}
