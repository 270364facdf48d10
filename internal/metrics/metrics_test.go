package metrics

import (
	"bytes"
	"context"
	"flag"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/broker"
	"github.com/vallum/vallum/internal/keeper"
	"github.com/vallum/vallum/internal/store"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden")

// TestWriteGolden: the exposition, every family of it, as Prometheus reads
// it. A change to a name, a label or the order shows here first.
func TestWriteGolden(t *testing.T) {
	counts := make([]int64, len(bridge.ApplyBuckets))
	for i := range counts {
		counts[i] = int64(2 + i)
	}
	r := reading{
		bridge: true,
		snap: bridge.Snapshot{
			Adds: map[string]int64{"bl6": 2, "bl": 40}, Dels: map[string]int64{"bl": 3},
			Refused: map[string]int64{"bad_line": 1, "allowlisted": 5},
		},
		size: map[string]int64{"bl": 37}, capacity: map[string]int64{"bl": 65536, "bl6": 0},
		connected: true, subscribed: true, reconnects: 1, messages: 99, queue: 4, syncs: 2, setsEmptied: 1,
		apply:    bridge.Histogram{Counts: counts, Count: 14, Sum: 0.125},
		lost:     map[string]int64{"bl": 1, "wl": 0},
		embedded: true,
		broker: broker.Stats{ClientsConnected: 3, MessagesReceived: 10, MessagesSent: 20, MessagesDropped: 1, Retained: 37,
			Refused: map[string]int64{"bad_password": 2}, ReportsHeld: []keeper.Held{{List: "bl", Reporter: "edge\"1", Reports: 7}},
			KeeperBans: map[string]int64{"bl": 37, "wl": 0}},
		store: broker.StoreStats{Stats: store.Stats{FileBytes: 4096, WriteErrors: 1, Loaded: store.Damage{Records: 2}}, Refused: 3,
			JournalHeld: 2, JournalReplayed: 900},
		stored: true, storeOK: false,
		hosts: &broker.HostsStats{Online: 2, Offline: 1, OutOfSync: 1, Untracked: 5, Lists: []broker.ListHosts{
			{List: "bl", Hosts: 2, Min: 30, Max: 37}, {List: "wl"}}},
	}
	var b bytes.Buffer
	write(&b, r)
	if *update {
		if err := os.WriteFile("testdata/metrics.golden", b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/metrics.golden")
	if err != nil {
		t.Fatal(err)
	}
	if !broker.WebBuilt { // the router builds: no hosts' view, the rest alike
		want = []byte(withoutHub(string(want)))
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("metrics (-golden +got):\n%s", diff)
	}
}

// fakeSets answers Info: the sets it knows, with a size, and ErrNoSet else.
type fakeSets struct {
	bridge.Backend
	sizes map[string]int
}

func (f fakeSets) Info(_ context.Context, set string) (bridge.SetInfo, error) {
	n, ok := f.sizes[set]
	if !ok {
		return bridge.SetInfo{}, bridge.ErrNoSet
	}
	return bridge.SetInfo{Name: set, Size: n, MaxElem: 100}, nil
}

// TestExporter: a set that cannot count shows its capacity only, a missing
// set shows nothing, and /healthz names what is wrong with a 503.
func TestExporter(t *testing.T) {
	e := &Exporter{Stats: &bridge.Stats{}, Backend: fakeSets{sizes: map[string]int{"bl": 5, "bl6": -1}}, Sets: []string{"bl", "bl6", "gone"}}
	r := e.read(context.Background())
	if diff := cmp.Diff(map[string]int64{"bl": 5}, r.size); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{"bl": 100, "bl6": 100}, r.capacity); diff != "" {
		t.Errorf("capacities (-want +got):\n%s", diff)
	}
	get := func() (int, string) {
		w := httptest.NewRecorder()
		e.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := get(); code != 503 || !strings.Contains(body, "not connected") || !strings.Contains(body, "set gone") {
		t.Errorf("/healthz = %d %q, want 503 naming the connection and the missing set", code, body)
	}
	e.Stats.Connected.Store(true)
	e.Sets = []string{"bl"}
	if code, body := get(); code != 503 || !strings.Contains(body, "not (yet) subscribed") {
		t.Errorf("/healthz = %d %q, want 503: not subscribed", code, body)
	}
	e.Stats.Subscribed.Store(true)
	e.Stats.SetListLost("bl", "")
	if code, body := get(); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	// A list whose broker lost its state: 503 until a sync finds it again.
	e.Stats.SetListLost("bl", "the broker has no keeper record")
	if code, body := get(); code != 503 || !strings.Contains(body, "list bl: the broker has no keeper record") {
		t.Errorf("/healthz = %d %q, want 503 naming the lost list", code, body)
	}
	if got := e.read(context.Background()).lost; got["bl"] != 1 {
		t.Errorf("vallum_list_state_lost = %v, want bl 1", got)
	}
	e.Stats.SetListLost("bl", "")
	if code, _ := get(); code != 200 {
		t.Errorf("/healthz = %d once the list is found again, want 200", code)
	}
	if err := e.Health(context.Background()); err != nil {
		t.Errorf("Health = %v", err)
	}
}

// TestBrokerOnly: `vallum broker --metrics` has no bridge: no bridge
// series (no vallum_mqtt_connected 0 to alert on), and /healthz is about
// the broker alone.
func TestBrokerOnly(t *testing.T) {
	var b bytes.Buffer
	write(&b, reading{embedded: true, hosts: &broker.HostsStats{Online: 1}})
	out := b.String()
	for _, want := range []string{"vallum_broker_clients 0\n", `vallum_hub_hosts{state="online"} 1` + "\n", "vallum_hub_hosts_out_of_sync 0\n"} {
		if !broker.WebBuilt {
			want = withoutHub(want)
		}
		if !strings.Contains(out, want) {
			t.Errorf("broker-only metrics lack %q:\n%s", want, out)
		}
	}
	bad := []string{"vallum_mqtt_", "vallum_set_", "vallum_apply_"}
	if !broker.WebBuilt {
		bad = append(bad, "vallum_hub_") // no hosts' view, even if handed one
	}
	for _, bad := range bad {
		if strings.Contains(out, bad) {
			t.Errorf("broker-only metrics have %s series:\n%s", bad, out)
		}
	}
	if err := (&Exporter{}).Health(context.Background()); err != nil {
		t.Errorf("Health without a bridge = %v, want nil", err)
	}
}

// withoutHub drops the lines of the hub's hosts' series.
func withoutHub(s string) string {
	var out []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.Contains(l, "vallum_hub_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
