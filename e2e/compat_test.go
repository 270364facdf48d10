//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// prevRelease is the commit of the previous release's hosts: the last
// commit before the compact list (per-ban state only, the record's epoch
// in the old spelling).
const prevRelease = "accdec7"

var prev struct {
	once sync.Once
	bin  string
	err  error
}

// prevBin returns the previous release's vallum, built from git once and
// kept in the user's cache folder (the next runs take it from there: a
// commit never changes). A checkout without git history skips the test.
func prevBin(t *testing.T) string {
	t.Helper()
	prev.once.Do(func() { prev.bin, prev.err = buildPrev() })
	if prev.err != nil {
		t.Skipf("previous release %s: %v", prevRelease, prev.err)
	}
	return prev.bin
}

func buildPrev() (string, error) {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("no git checkout: %v", err)
	}
	full, err := exec.Command("git", "rev-parse", "--verify", prevRelease+"^{commit}").Output()
	if err != nil {
		return "", fmt.Errorf("commit not in this clone: %v", err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "vallum-e2e", "vallum-"+strings.TrimSpace(string(full)))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	src, err := os.MkdirTemp("", "vallum-prev")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	script := fmt.Sprintf("git -C %q archive %s | tar -x -C %q", strings.TrimSpace(string(root)), prevRelease, src)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		return "", fmt.Errorf("git archive: %v: %s", err, out)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	build := exec.Command("go", "build", "-o", bin+".tmp", "./cmd/vallum")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v: %s", err, out)
	}
	return bin, os.Rename(bin+".tmp", bin)
}

// compatHub runs a hub (`vallum broker`, no bridge of its own: the
// namespace's sets are the old host's alone) of bin on the loopback of h,
// with its store in dir/hub-store.
func compatHub(t *testing.T, h *lab.Host, dir, bin string, args ...string) *lab.Proc {
	t.Helper()
	p := must[*lab.Proc](t)(h.Start(dir, bin, append([]string{"broker", "--listen", "127.0.0.1:1883", "-t", "blacklist",
		"--data-dir", filepath.Join(dir, "hub-store")}, args...)...))
	killAtEnd(t, &p)
	if err := h.WaitPort(1883, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// hubCLI runs bin's `vallum ban`, `unban` and so on against the hub on h.
func hubCLI(t *testing.T, h *lab.Host, dir, bin string, args ...string) {
	t.Helper()
	out, err := h.Exec(bin, append(args, "-h", "127.0.0.1", "--data-dir", filepath.Join(dir, "cli"))...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(bin), args, err, out)
	}
}

// retainedOn returns the retained messages of the hub on h under filter.
func retainedOn(t *testing.T, h *lab.Host, filter string) map[string]string {
	t.Helper()
	got, err := h.RetainedState(1883, filter, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitManifest waits until the hub's keeper has cut the list into
// chunks: its manifest is retained.
func waitManifest(t *testing.T, h *lab.Host) {
	t.Helper()
	err := lab.Eventually(30*time.Second, func() (bool, string) {
		return len(retainedOn(t, h, wire.ManifestTopic("blacklist"))) == 1, "no manifest retained"
	})
	if err != nil {
		t.Fatal(err)
	}
}

// holdPrefixes checks, every 200 ms for d, that set on h holds want and
// nothing else.
func holdPrefixes(t *testing.T, h *lab.Host, set string, d time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		got := must[[]string](t)(h.Prefixes(set))
		if !slices.Equal(got, want) {
			t.Fatalf("set %s on %s = %v, want %v kept", set, h.Name, got, want)
		}
	}
}

// upgrade runs the previous release's hub with a host of that release,
// bans three prefixes through it (two `vallum ban`, a legacy event), then
// replaces the hub by this release's on the same store with args. It
// returns the host and the new hub.
func upgrade(t *testing.T, h *lab.Host, dir, old string, args ...string) (host, hub *lab.Proc) {
	t.Helper()
	hub = compatHub(t, h, dir, old)
	host = must[*lab.Proc](t)(h.StartVallum(dir, old, "-h", "127.0.0.1", "-t", "blacklist"))
	killAtEnd(t, &host)
	hubCLI(t, h, dir, old, "ban", "blacklist", "203.0.113.1", "--timeout", "1h", "--reason", "sshd")
	hubCLI(t, h, dir, old, "ban", "blacklist", "203.0.113.2")
	must[string](t)(h.Exec("mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t", "blacklist/add", "-m", "198.51.100.0/24 timeout 3600"))
	waitPrefixes(t, h, "blacklist", "203.0.113.1", "203.0.113.2", "198.51.100.0/24")
	if err := hub.Stop(); err != nil {
		t.Fatal(err)
	}
	return host, compatHub(t, h, dir, vallumBin, args...)
}

// TestPreviousReleaseHostUpgrade: a host of the previous release (it reads
// per-ban state only) whose hub is upgraded to this release with its
// defaults. The list, in the old spelling, keeps per-ban state for every
// ban besides its chunks (the hub says so), and the old host converges as
// before: it keeps its bans through the hub's cut and a resync, and takes
// this release's bans and unbans, live and while it was away.
func TestPreviousReleaseHostUpgrade(t *testing.T) {
	old := prevBin(t)
	l, dir := newLab(t)
	h := addHost(t, l, "hub")
	host, hub := upgrade(t, h, dir, old)
	if err := hub.WaitLog("--legacy-state=false", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitManifest(t, h)
	// The keeper deletes the per-ban states its cut holds at once, or 10 s
	// later for those touched lately (keeper statedFor): none here.
	holdPrefixes(t, h, "blacklist", 15*time.Second, "203.0.113.1", "203.0.113.2", "198.51.100.0/24")
	if n := len(retainedOn(t, h, "blacklist/ban/#")); n != 3 {
		t.Errorf("%d per-ban states retained after the cut, want the 3 bans'", n)
	}

	hubCLI(t, h, dir, vallumBin, "ban", "blacklist", "203.0.113.3")
	hubCLI(t, h, dir, vallumBin, "unban", "blacklist", "203.0.113.2")
	waitPrefixes(t, h, "blacklist", "203.0.113.1", "203.0.113.3", "198.51.100.0/24")

	// Away: a ban lifted meanwhile is gone after its restart's sync.
	if err := host.Stop(); err != nil {
		t.Fatal(err)
	}
	hubCLI(t, h, dir, vallumBin, "unban", "blacklist", "203.0.113.1")
	hubCLI(t, h, dir, vallumBin, "ban", "blacklist", "203.0.113.4", "--timeout", "1h")
	host = must[*lab.Proc](t)(h.StartVallum(dir, old, "-h", "127.0.0.1", "-t", "blacklist"))
	waitPrefixes(t, h, "blacklist", "203.0.113.3", "203.0.113.4", "198.51.100.0/24")
	if strings.Contains(host.Output(), "level=ERROR") {
		t.Errorf("the old host logged at ERROR:\n%s", host.Output())
	}
}

// TestPreviousReleaseHostLegacyState: this release's hub with
// --legacy-state, a host of the previous release joining late: it gets
// the whole list, bans made by `vallum ban` and by legacy events.
func TestPreviousReleaseHostLegacyState(t *testing.T) {
	old := prevBin(t)
	l, dir := newLab(t)
	h := addHost(t, l, "hub")
	compatHub(t, h, dir, vallumBin, "--legacy-state")
	hubCLI(t, h, dir, vallumBin, "ban", "blacklist", "203.0.113.1", "--timeout", "1h", "--reason", "sshd")
	hubCLI(t, h, dir, vallumBin, "ban", "blacklist", "2001:db8::/48")
	must[string](t)(h.Exec("mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t", "blacklist/add", "-m", "198.51.100.0/24 timeout 3600"))
	waitManifest(t, h)
	host := must[*lab.Proc](t)(h.StartVallum(dir, old, "-h", "127.0.0.1", "-t", "blacklist"))
	killAtEnd(t, &host)
	waitPrefixes(t, h, "blacklist", "203.0.113.1", "198.51.100.0/24")
	waitPrefixes(t, h, "blacklist6", "2001:db8::/48")
	hubCLI(t, h, dir, vallumBin, "unban", "blacklist", "203.0.113.1")
	waitPrefixes(t, h, "blacklist", "198.51.100.0/24")
}

// TestPreviousReleaseHostV2: the upgraded hub with --legacy-state=false
// while a host of the previous release remains. The record's v2 epoch
// makes that host log at ERROR at every sync that the record is not valid
// (it removes nothing at a sync); but the keeper's deletions of the
// per-ban states its cut folded into chunks reach the host live, as
// unbans. What README "Upgrading to the compact list" warns of.
func TestPreviousReleaseHostV2(t *testing.T) {
	old := prevBin(t)
	l, dir := newLab(t)
	h := addHost(t, l, "hub")
	host, _ := upgrade(t, h, dir, old, "--legacy-state=false")
	if err := host.WaitLog("keeper record is not valid", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitManifest(t, h)
	waitPrefixes(t, h, "blacklist") // every ban lost, within the keeper's 10 s
	if n := len(retainedOn(t, h, "blacklist/ban/#")); n != 0 {
		t.Errorf("%d per-ban states retained after the cut, want none", n)
	}
	if !strings.Contains(host.Output(), "level=ERROR") {
		t.Errorf("the old host never logged at ERROR:\n%s", host.Output())
	}
}
