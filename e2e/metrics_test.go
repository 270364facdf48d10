//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
)

// TestMetrics runs a known sequence of messages through vallum and reads
// its Prometheus counters and health check as a monitoring system would.
func TestMetrics(t *testing.T) {
	l, dir := newLab(t)
	h := addHost(t, l, "host")
	broker := must[*lab.Proc](t)(h.StartMosquitto(dir, 1883, false))
	must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, "-h", "127.0.0.1", "-t", "blacklist", "--metrics", "127.0.0.1:9101"))
	web := h.HTTPClient()

	pub := must[mqtt.Client](t)(h.Connect(1883, mqtt.NewClientOptions().SetClientID("metrics-pub")))
	defer pub.Disconnect(100)
	// 5 good adds, 1 bad line, 1 allowlisted address, 1 prefix too broad;
	// then 2 dels.
	send(t, pub, "blacklist/add", "203.0.113.1\n203.0.113.2\n203.0.113.3\nnot-an-address\n203.0.113.4\n"+
		"127.0.0.1\n0.0.0.0/0\n203.0.113.5 timeout 600")
	// The dels wait for the adds, so that the set's size is known too.
	waitPrefixes(t, h, "blacklist", "203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.5")
	send(t, pub, "blacklist/del", "203.0.113.1\n203.0.113.2")
	waitPrefixes(t, h, "blacklist", "203.0.113.3", "203.0.113.4", "203.0.113.5")

	want := map[string]float64{
		`vallum_adds_total{set="blacklist"}`:         5,
		`vallum_dels_total{set="blacklist"}`:         2,
		`vallum_refused_total{reason="bad_line"}`:    1,
		`vallum_refused_total{reason="allowlisted"}`: 1,
		`vallum_refused_total{reason="too_broad"}`:   1,
		`vallum_set_entries{set="blacklist"}`:        3,
		`vallum_set_entries{set="blacklist6"}`:       0,
		`vallum_mqtt_connected`:                      1,
		`vallum_queue_depth`:                         0,
		`vallum_sets_emptied_total`:                  0,
	}
	var got map[string]float64
	// The counters may trail the kernel by a moment: the worker counts
	// after Apply returns.
	err := lab.Eventually(10*time.Second, func() (bool, string) {
		var err error
		if got, err = h.Metrics(9101); err != nil {
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
		t.Errorf("metrics: %v", err)
	}
	if got["vallum_apply_seconds_count"] <= 0 {
		t.Errorf("vallum_apply_seconds_count = %v, want > 0", got["vallum_apply_seconds_count"])
	}
	if code, body := get(t, web, "http://127.0.0.1:9101/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}

	if err := broker.Stop(); err != nil {
		t.Fatalf("stop mosquitto: %v", err)
	}
	var code int
	var body string
	err = lab.Eventually(20*time.Second, func() (bool, string) {
		code, body = get(t, web, "http://127.0.0.1:9101/healthz")
		return code == 503, fmt.Sprintf("GET /healthz = %d %q after the broker stopped, want 503", code, body)
	})
	if err != nil {
		t.Error(err)
	}
	if !strings.Contains(body, "broker") {
		t.Errorf("GET /healthz body %q does not say the broker is the problem", body)
	}
	if got, err := h.Metrics(9101); err != nil || got["vallum_mqtt_connected"] != 0 {
		t.Errorf("vallum_mqtt_connected = %v (%v) after the broker stopped, want 0", got["vallum_mqtt_connected"], err)
	}
}

func send(t *testing.T, c mqtt.Client, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// get returns the status and body of url, or 0 and the error text.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	r, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	return r.StatusCode, string(b)
}
