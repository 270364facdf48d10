//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

// site is a mosquitto bridged to the hub with contrib/mosquitto-bridge.
type site struct {
	h    *lab.Host
	conf string
	dir  string
	proc *lab.Proc
}

// recipeConf reads a file of contrib/mosquitto-bridge and fits it to the
// lab: the hub's address, the bridge's client id, a store of its own, root.
func recipeConf(t *testing.T, name, dir, hub, clientID string) string {
	t.Helper()
	b := must[[]byte](t)(os.ReadFile(filepath.Join("..", "contrib", "mosquitto-bridge", name)))
	store := filepath.Join(dir, "store-"+clientID) + "/"
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("hub.example", hub, "clientid site1-bridge", "clientid "+clientID,
		"persistence_location /var/lib/mosquitto/", "persistence_location "+store).Replace(string(b))
	path := filepath.Join(dir, clientID+".conf")
	if err := os.WriteFile(path, []byte("user root\nallow_anonymous true\nlog_dest stdout\n"+conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func (s *site) start(t *testing.T) {
	t.Helper()
	s.proc = must[*lab.Proc](t)(s.h.Start(s.dir, "mosquitto", "-c", s.conf))
	if err := s.h.WaitPort(1883, 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, s.proc.Output())
	}
}

// The recipe's promise: a site away while bans and unbans happen, on the
// hub and from the other site, comes back to the same list as everybody,
// and no lifted ban comes back anywhere.
func TestMosquittoHubAndSites(t *testing.T) {
	l, dir := newLab(t)
	hubH := addHost(t, l, "hub")
	hub := &site{h: hubH, conf: recipeConf(t, "hub.conf", dir, "", "hub"), dir: dir}
	hub.start(t)
	var sites []*site
	var hosts []*lab.Host
	for _, name := range []string{"s1", "s2"} {
		s := &site{h: addHost(t, l, name), dir: dir}
		s.conf = recipeConf(t, "site.conf", dir, hubH.Addr4, name+"-bridge")
		s.start(t)
		sites = append(sites, s)
	}
	for i, s := range append([]*lab.Host{hubH}, sites[0].h, sites[1].h) {
		h := addHost(t, l, "host"+string(rune('0'+i)))
		must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-h", s.Addr4, "-t", root))
		hosts = append(hosts, h)
	}
	ban := func(from *lab.Host, verb, addr string) {
		t.Helper()
		must[string](t)(from.Exec(vallumBin, "-h", hubH.Addr4, verb, root, addr))
	}
	ban(hubH, "ban", "203.0.113.1")
	ban(hosts[2], "ban", "203.0.113.2") // from a host of site 2
	ban(hubH, "ban", "203.0.113.3")
	for _, h := range hosts {
		waitSet(t, h, 20*time.Second, []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"})
	}

	if err := sites[0].proc.Stop(); err != nil { // site 1 away (a clean stop saves its store)
		t.Fatal(err)
	}
	ban(hubH, "unban", "203.0.113.1")
	ban(hosts[2], "unban", "203.0.113.2")
	ban(hosts[2], "ban", "203.0.113.4")
	ban(hubH, "ban", "203.0.113.5")
	ban(hubH, "unban", "203.0.113.5") // made and lifted while site 1 was away
	want := []string{"203.0.113.3", "203.0.113.4"}
	waitSet(t, hosts[2], 20*time.Second, want)

	// Site 1's host reconnects while site 1 catches up with the hub: its
	// first sync may read lifted bans, its confirming sync removes them.
	sites[0].start(t)
	for _, h := range hosts {
		waitSet(t, h, 30*time.Second, want)
	}
	// The brokers' own copies agree too: a host that joins at any site
	// later gets the same list.
	for _, b := range []*lab.Host{hubH, sites[0].h, sites[1].h} {
		got := retainedBans(t, b)
		if !slices.Equal(got, want) {
			t.Errorf("broker %s holds %v, want %v", b.Name, got, want)
		}
	}
}

// retainedBans lists the bans a broker holds, as a new subscriber sees them.
func retainedBans(t *testing.T, b *lab.Host) []string {
	t.Helper()
	got, err := b.RetainedState(1883, root+"/ban/#", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for topic := range got {
		out = append(out, strings.TrimPrefix(topic, root+"/ban/"))
	}
	sort.Strings(out)
	return out
}
