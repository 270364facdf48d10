//go:build !vallum_lean

package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vallum/vallum/bridge"
)

// TestDrops: the drop counters appear by list and family when the exporter
// can read them, and not at all when it cannot or has no rules to read.
func TestDrops(t *testing.T) {
	scrape := func(e *Exporter) string {
		w := httptest.NewRecorder()
		e.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		return w.Body.String()
	}
	e := &Exporter{Stats: &bridge.Stats{}, Backend: fakeSets{}, Drops: func(context.Context) ([]Drop, error) {
		return []Drop{{List: "blacklist", Family: "ipv4", Packets: 12, Bytes: 1008}, {List: "blacklist", Family: "ipv6"}}, nil
	}}
	out := scrape(e)
	for _, want := range []string{
		"# TYPE vallum_dropped_packets_total counter\n",
		`vallum_dropped_packets_total{list="blacklist",family="ipv4"} 12` + "\n",
		`vallum_dropped_packets_total{list="blacklist",family="ipv6"} 0` + "\n",
		`vallum_dropped_bytes_total{list="blacklist",family="ipv4"} 1008` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, out)
		}
	}
	e.Drops = func(context.Context) ([]Drop, error) { return nil, errors.New("chain gone") }
	if out := scrape(e); strings.Contains(out, "vallum_dropped") {
		t.Errorf("/metrics shows drop counters it could not read:\n%s", out)
	}
	e.Drops = nil
	if out := scrape(e); strings.Contains(out, "vallum_dropped") {
		t.Errorf("/metrics shows drop counters without rules of vallum's own:\n%s", out)
	}
}

// TestSensorCounters: the sensor's counters appear when it runs, and
// not at all otherwise.
func TestSensorCounters(t *testing.T) {
	e := &Exporter{Stats: &bridge.Stats{}, Backend: fakeSets{}}
	var b strings.Builder
	write(&b, e.read(context.Background()))
	if strings.Contains(b.String(), "vallum_sensor") {
		t.Fatalf("no sensor, yet its series:\n%s", b.String())
	}
	e.Sensor = func() SensorCounts { return SensorCounts{Packets: 50, Bans: 1, Overload: 7, Tracked: 3} }
	b.Reset()
	write(&b, e.read(context.Background()))
	for _, w := range []string{"vallum_sensor_packets_total 50\n", "vallum_sensor_bans_total 1\n", "vallum_sensor_overload_total 7\n", "vallum_sensor_tracked_sources 3\n"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("metrics lack %q:\n%s", w, b.String())
		}
	}
}
