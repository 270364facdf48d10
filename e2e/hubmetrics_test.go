//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

// TestHubMetricsHosts: `vallum broker --metrics` with two hosts, each in
// its own namespace. The hub's /metrics counts both online and synced,
// and their entries once a ban reached them, beside the keeper's count of
// the list's bans (and both once one is lifted); a host SIGKILLed (no
// goodbye: the broker publishes its will) is counted offline, as is one
// stopped cleanly (its goodbye).
func TestHubMetricsHosts(t *testing.T) {
	l, dir := newLab(t)
	hub, e1, e2 := addHost(t, l, "hub"), addHost(t, l, "edge1"), addHost(t, l, "edge2")
	usersFile, u := writeUsers(t, dir, hubUsers, "")
	hv := must[*lab.Proc](t)(hub.Start(dir, vallumBin, "broker", "--listen", "0.0.0.0:1883", "--users", usersFile,
		"-t", "blacklist", "--metrics", "127.0.0.1:9101", "--data-dir", filepath.Join(dir, "hub-data")))
	killAtEnd(t, &hv)
	if err := hv.WaitLog("metrics listening", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	edges := map[string]*lab.Proc{}
	for _, e := range []*lab.Host{e1, e2} {
		p := must[*lab.Proc](t)(e.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-u", e.Name, "--password-file", u[e.Name].pwFile, "-t", "blacklist"))
		killAtEnd(t, &p)
		edges[e.Name] = p
	}
	must[string](t)(e2.Exec("mosquitto_pub", "-h", hub.Addr4, "-q", "1", "-u", "reporter", "-P", "pw-of-reporter",
		"-t", "blacklist/add", "-m", "203.0.113.60\n203.0.113.61"))

	hubSays(t, hub, "both edges online, synced, with the two bans", map[string]float64{
		`vallum_hub_hosts{state="online"}`: 2, `vallum_hub_hosts{state="offline"}`: 0, "vallum_hub_hosts_out_of_sync": 0,
		`vallum_hub_host_entries_min{list="blacklist"}`: 2, `vallum_hub_host_entries_max{list="blacklist"}`: 2,
		"vallum_hub_hosts_untracked_total": 0, `vallum_keeper_bans{list="blacklist"}`: 2,
	})
	if m, err := hub.Metrics(9101); err == nil {
		if _, ok := m["vallum_mqtt_connected"]; ok {
			t.Errorf("vallum broker's /metrics has vallum_mqtt_connected: it runs no bridge")
		}
	}
	if code, body := get(t, hub.HTTPClient(), "http://127.0.0.1:9101/healthz"); code != 200 {
		t.Errorf("GET /healthz of vallum broker = %d %q, want 200", code, body)
	}

	must[string](t)(e2.Exec("mosquitto_pub", "-h", hub.Addr4, "-q", "1", "-u", "reporter", "-P", "pw-of-reporter",
		"-t", "blacklist/del", "-m", "203.0.113.61"))
	hubSays(t, hub, "one ban lifted", map[string]float64{
		`vallum_keeper_bans{list="blacklist"}`: 1, `vallum_hub_host_entries_max{list="blacklist"}`: 1,
	})

	edges["edge1"].Kill() // SIGKILL: no goodbye, the broker publishes the will
	hubSays(t, hub, "edge1 killed: its will", map[string]float64{
		`vallum_hub_hosts{state="online"}`: 1, `vallum_hub_hosts{state="offline"}`: 1, "vallum_hub_hosts_out_of_sync": 0,
	})
	if err := edges["edge2"].Stop(); err != nil {
		t.Errorf("stop edge2: %v", err)
	}
	hubSays(t, hub, "edge2 stopped: its goodbye", map[string]float64{
		`vallum_hub_hosts{state="online"}`: 0, `vallum_hub_hosts{state="offline"}`: 2,
	})
}

// hubSays waits until the hub's /metrics has every series of want.
func hubSays(t *testing.T, hub *lab.Host, what string, want map[string]float64) {
	t.Helper()
	err := lab.Eventually(20*time.Second, func() (bool, string) {
		got, err := hub.Metrics(9101)
		if err != nil {
			return false, err.Error()
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				return false, fmt.Sprintf("%s = %v (present %v), want %v", k, g, ok, v)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Errorf("%s: %v", what, err)
	}
}
