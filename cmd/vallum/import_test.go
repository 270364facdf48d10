//go:build !vallum_small && !vallum_noimport

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/feed"
)

// runCLI runs vallum with args against the test broker as admin.
func runCLI(t *testing.T, port string, args ...string) (string, error) {
	t.Helper()
	t.Setenv("VALLUM_CONFIG", "")
	t.Setenv("VALLUM_PASSWORD", "pw-admin")
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "-h", "127.0.0.1", "-p", port, "-u", "admin", "--data-dir", t.TempDir()))
	err := root.Execute()
	return out.String(), err
}

// listJSON reads the list as `vallum list -o json` prints it.
func listJSON(t *testing.T, port string) map[string]banJSON {
	t.Helper()
	out, err := runCLI(t, port, "list", "blacklist", "-o", "json")
	if err != nil {
		t.Fatalf("vallum list -o json: %v\n%s", err, out)
	}
	got := map[string]banJSON{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var b banJSON
		if err := json.Unmarshal([]byte(line), &b); err != nil {
			t.Fatalf("vallum list -o json line %q: %v", line, err)
		}
		got[b.Prefix] = b
	}
	return got
}

func keys(m map[string]banJSON) []string {
	var k []string
	for p := range m {
		k = append(k, p)
	}
	slices.Sort(k)
	return k
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImportSyncAndRoundTrip: an import bans what a feed holds and refuses
// what the guard refuses; a changed feed with --sync bans only what is new
// and lifts only its own bans that left it (another's ban stays, and the
// untouched entries keep their at); list -o plain imported back changes
// nothing.
func TestImportSyncAndRoundTrip(t *testing.T) {
	port := listBroker(t)
	if out, err := runCLI(t, port, "ban", "blacklist", "192.0.2.99", "--reason", "by-hand"); err != nil {
		t.Fatalf("vallum ban: %v\n%s", err, out)
	}
	first := writeFile(t, "feed.netset", "# a feed\n192.0.2.1\n198.51.100.0/24\n10.0.0.0/4\n127.0.0.5\n")
	out, err := runCLI(t, port, "import", "blacklist", first, "--timeout", "1d", "--allow", "198.51.100.128/25")
	if err != nil {
		t.Fatalf("vallum import: %v\n%s", err, out)
	}
	for _, want := range []string{"3 refused", `line 3 "198.51.100.0/24": covers an allowlisted address 198.51.100.128/25`,
		"line 4", "broader than", `line 5 "127.0.0.5"`, "published 1 bans"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	got := listJSON(t, port)
	if want := []string{"192.0.2.1", "192.0.2.99"}; !slices.Equal(keys(got), want) {
		t.Fatalf("list after import = %v, want %v", keys(got), want)
	}
	b := got["192.0.2.1"]
	if b.Origin != "import:feed.netset" || b.Reason != "feed.netset" || b.Expires-time.Now().Unix() < 86300 {
		t.Errorf("imported ban %+v: want origin import:feed.netset, reason feed.netset, a day left", b)
	}

	// The feed changes: 192.0.2.1 stays, 192.0.2.2 comes; with --sync
	// nothing of another origin (192.0.2.99) goes, though it left no feed.
	second := writeFile(t, "feed.netset", "192.0.2.1\n192.0.2.2\n")
	if out, err := runCLI(t, port, "import", "blacklist", second, "--timeout", "1d", "--sync"); err != nil ||
		!strings.Contains(out, "1 to ban, 1 already banned, 0 to lift") {
		t.Fatalf("second import: %v\n%s", err, out)
	}
	third := writeFile(t, "feed.netset", "192.0.2.2\n")
	if out, err := runCLI(t, port, "import", "blacklist", third, "--timeout", "1d", "--sync"); err != nil ||
		!strings.Contains(out, "0 to ban, 1 already banned, 1 to lift") {
		t.Fatalf("third import: %v\n%s", err, out)
	}
	// An empty feed (a failed download, most likely) lifts nothing.
	empty := writeFile(t, "feed.netset", "# nothing\n")
	if out, err := runCLI(t, port, "import", "blacklist", empty, "--sync"); err == nil || !strings.Contains(err.Error(), "would lift all 1 bans") {
		t.Errorf("--sync with an empty feed: %v, want refused\n%s", err, out)
	}
	after := listJSON(t, port)
	if want := []string{"192.0.2.2", "192.0.2.99"}; !slices.Equal(keys(after), want) {
		t.Fatalf("list after --sync = %v, want %v", keys(after), want)
	}
	if after["192.0.2.99"].At != got["192.0.2.99"].At {
		t.Errorf("the hand-made ban was republished: at %d, was %d", after["192.0.2.99"].At, got["192.0.2.99"].At)
	}

	// Round trip: what list -o plain prints, imported again, changes nothing.
	plain, err := runCLI(t, port, "list", "blacklist", "-o", "plain")
	if err != nil {
		t.Fatalf("list -o plain: %v", err)
	}
	out, err = runCLI(t, port, "import", "blacklist", writeFile(t, "again", plain), "--name", "feed.netset", "--timeout", "1d", "--sync")
	if err != nil || !strings.Contains(out, "0 to ban, 2 already banned, 0 to lift") {
		t.Fatalf("import of list -o plain: %v\n%s", err, out)
	}
	if end := listJSON(t, port); !slices.Equal(keys(end), keys(after)) || end["192.0.2.2"].At != after["192.0.2.2"].At {
		t.Fatalf("round trip changed the list: %v, was %v", end, after)
	}
}

// TestImportURL: a feed over HTTP (a local server), the format detected;
// a server error and a feed over the size bound are errors, not an empty
// feed (which --sync would take as "lift everything").
func TestImportURL(t *testing.T) {
	port := listBroker(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/drop_v4.json":
			w.Write([]byte(`{"cidr":"203.0.113.0/24","sblid":"SBL1","rir":"arin"}` + "\n" + `{"type":"metadata","records":1}` + "\n"))
		case "/endless":
			line := bytes.Repeat([]byte("203.0.113.7\n"), 1000)
			for range 1000 { // bounded: 12 MB, over the test's bound
				if _, err := w.Write(line); err != nil {
					return
				}
			}
		default:
			http.Error(w, "gone", http.StatusNotFound)
		}
	}))
	defer srv.Close()
	out, err := runCLI(t, port, "import", "blacklist", srv.URL+"/drop_v4.json?x=1", "--sync")
	if err != nil || !strings.Contains(out, "import:drop_v4.json: spamhaus-json, 1 entries") {
		t.Fatalf("import of a URL: %v\n%s", err, out)
	}
	if out, err := runCLI(t, port, "import", "blacklist", srv.URL+"/missing", "--sync"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("import of a missing URL: %v, want a 404 error\n%s", err, out)
	}
	defer func(n int64) { fetchMax = n }(fetchMax)
	fetchMax = 1 << 20
	if out, err := runCLI(t, port, "import", "blacklist", srv.URL+"/endless"); err == nil || !errors.Is(err, feed.ErrTooLarge) {
		t.Errorf("import of an endless feed: %v, want an error\n%s", err, out)
	}
	if got := keys(listJSON(t, port)); !slices.Equal(got, []string{"203.0.113.0/24"}) {
		t.Errorf("list = %v, want only the Spamhaus entry", got)
	}
}

// TestImportSharedAllowlist: an entry covered by the fleet's shared
// allowlist (vallum/allow/PREFIX, retained) is refused and reported by the
// import itself; a deleted allow entry (empty payload) no longer counts.
func TestImportSharedAllowlist(t *testing.T) {
	port := listBroker(t)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://127.0.0.1:" + port).
		SetClientID("allow-test-pub").SetUsername("admin").SetPassword("pw-admin"))
	if err := wait(c.Connect(), "connect"); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(250)
	for topic, payload := range map[string]string{
		"vallum/allow/198.51.100.0/24": `{"at":1800000000000,"comment":"office"}`,
		"vallum/allow/203.0.113.7":     `{"at":1800000000000}`,
	} {
		if err := wait(c.Publish(topic, 1, true, payload), "publish"); err != nil {
			t.Fatal(err)
		}
	}
	if err := wait(c.Publish("vallum/allow/203.0.113.7", 1, true, ""), "publish"); err != nil {
		t.Fatal(err)
	}
	feed := writeFile(t, "f", "198.51.100.77\n203.0.113.7\n192.0.2.1\n")
	out, err := runCLI(t, port, "import", "blacklist", feed)
	if err != nil {
		t.Fatalf("vallum import: %v\n%s", err, out)
	}
	if !strings.Contains(out, `line 1 "198.51.100.77": covers an allowlisted address 198.51.100.0/24`) || !strings.Contains(out, "1 refused") {
		t.Errorf("import output does not report the shared allowlist's refusal:\n%s", out)
	}
	if got := keys(listJSON(t, port)); !slices.Equal(got, []string{"192.0.2.1", "203.0.113.7"}) {
		t.Errorf("list = %v, want 192.0.2.1 and 203.0.113.7 (its allow entry was deleted)", got)
	}
}
