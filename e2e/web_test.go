//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/web"
	"github.com/vallum/vallum/internal/wire"
)

// webUsers are the hub's users of the web tests.
var webUsers = map[string]string{"admin": "admin", "reporter": "reporter", "edge1": "host", "edge2": "host"}

// webHub starts `vallum broker --web` on a hub serving blacklist (the
// hosts' list) and feed (100,000 bans nobody subscribes to), edge1
// bridging blacklist into its kernel sets, and edge2 doing the same (its
// vallum is returned, for the test to kill).
func webHub(t *testing.T) (hub, edge1 *lab.Host, e2 *lab.Proc, dir string, u map[string]hubUser) {
	t.Helper()
	l, dir := newLab(t)
	hub, edge1, edge2 := addHost(t, l, "hub"), addHost(t, l, "edge1"), addHost(t, l, "edge2")
	usersFile, u := writeUsers(t, dir, webUsers, "")
	hv := must[*lab.Proc](t)(hub.Start(dir, vallumBin, "broker", "--listen", "0.0.0.0:1883", "--users", usersFile,
		"-t", "blacklist", "-t", "feed", "--web", "127.0.0.1:8080", "--data-dir", filepath.Join(dir, "hub-data")))
	killAtEnd(t, &hv)
	if err := hv.WaitLog("web view listening", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	e2 = must[*lab.Proc](t)(edge2.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-u", "edge2", "--password-file", u["edge2"].pwFile, "-t", "blacklist"))
	killAtEnd(t, &e2)
	ev := must[*lab.Proc](t)(edge1.StartVallum(dir, vallumBin, "-h", hub.Addr4, "-u", "edge1", "--password-file", u["edge1"].pwFile,
		"-t", "blacklist", "--backend", "nft"))
	killAtEnd(t, &ev)
	seed(t, hub)
	return hub, edge1, e2, dir, u
}

// seed publishes, as the admin, a day of bans with reasons and origins on
// blacklist, and 100,000 bans on feed in four events of 25,000 lines,
// which the hub's keeper makes state.
func seed(t *testing.T, hub *lab.Host) {
	t.Helper()
	c := must[mqtt.Client](t)(hub.Connect(1883, mqtt.NewClientOptions().SetClientID("seed").
		SetUsername("admin").SetPassword("pw-of-admin")))
	defer c.Disconnect(250)
	pub := func(topic string, retain bool, payload []byte) {
		t.Helper()
		tok := c.Publish(topic, 1, retain, payload)
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	reasons := []string{"sshd", "sshd", "sshd", "portscan", "postfix", "nginx-botsearch", "sshd", "dovecot"}
	origins := []string{"edge1", "edge2", "fw-office", "edge1", "mail", "www"}
	now := time.Now()
	for i := 59; i >= 0; i-- { // oldest first, as they would have come
		st := wire.State{At: now.Add(-time.Duration(i*i*23) * time.Second), Reason: reasons[i%len(reasons)], Origin: origins[i%len(origins)]}
		if i%3 != 0 {
			st.Expires = st.At.Add(24 * time.Hour)
		}
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i)}), 32)
		pub(wire.StateTopic("blacklist", p), true, wire.EncodeState(st))
	}
	// A reporter's reason and origin are text to the page, never markup.
	hostile := wire.State{At: now.Add(-time.Minute), Reason: `<img src=x onerror="window.pwned=1">`, Origin: `<b id=pwned>x</b>`}
	pub(wire.StateTopic("blacklist", netip.MustParsePrefix("203.0.113.99/32")), true, wire.EncodeState(hostile))
	for part := range 4 {
		var b strings.Builder
		for i := part * 25000; i < (part+1)*25000; i++ {
			fmt.Fprintf(&b, "10.%d.%d.%d timeout 0\n", byte(i>>16), byte(i>>8), byte(i))
		}
		pub("feed/add", false, []byte(b.String()))
	}
}

// TestWebPage is the web view in a real browser (Debian's chromium,
// headless): the page loads without an error in the console, shows a ban
// published a moment earlier (live), pages through 100,000 bans and
// searches them, a ban from the page lands in a host's kernel set and an
// unban from the page takes it out, the hosts show; a reporter looks but
// cannot act. Screenshots are left in artifacts(t), and in docs/web.png
// with VALLUM_UPDATE_DOCS=1.
func TestWebPage(t *testing.T) {
	hub, edge1, edge2, dir, u := webHub(t)
	out := artifacts(t)
	b := startBrowser(t, hub, dir)
	page := b.newTab(t, "admin", "pw-of-admin")
	page.open("http://127.0.0.1:8080/")
	page.waitFor(`document.querySelectorAll("#lists .card").length === 2`, 10*time.Second)
	page.waitFor(`document.querySelector('#lists .card[data-list="feed"] .n').textContent === "100,000"`, 60*time.Second)
	page.waitFor(`document.querySelector("#live").className === ""`, 10*time.Second)
	var markup bool
	page.mustEval(`!!(window.pwned || document.querySelector("#pwned, #bans img, #lists img")) ||
		![...document.querySelectorAll("#bans td")].some(td => td.textContent === '<img src=x onerror="window.pwned=1">')`, &markup)
	if markup {
		t.Error("a ban's reason or origin became markup in the page, or is not shown as text")
	}

	// Live: a ban published with `vallum ban` shows in the page's list
	// and stream, with no reload.
	page.mustEval(`window.seen = new Promise(r => new MutationObserver((_, o) => {
		if (document.querySelector('#bans tr[data-prefix="198.51.100.7"]')) { o.disconnect(); r(Date.now()); }
	}).observe(document.querySelector("#bans tbody"), {childList: true})), true`, nil)
	sent := time.Now()
	if out, err := banFrom(t, edge1, hub, dir, u["reporter"], "ban", "blacklist", "198.51.100.7", "--timeout", "1h", "--reason", "live"); err != nil {
		t.Fatalf("vallum ban: %v\n%s", err, out)
	}
	returned := time.Now()
	var shownAt int64
	page.mustEval(`Promise.race([window.seen, new Promise(r => setTimeout(() => r(0), 5000))])`, &shownAt)
	if shownAt == 0 {
		t.Fatal("the ban published with vallum ban did not show in the page within 5 s")
	}
	t.Logf("live: the ban showed %v after vallum ban started, %v after it returned",
		time.UnixMilli(shownAt).Sub(sent).Round(time.Millisecond), time.UnixMilli(shownAt).Sub(returned).Round(time.Millisecond))
	page.waitFor(`[...document.querySelectorAll("#events li")].some(li => li.textContent.includes("198.51.100.7"))`, 5*time.Second)

	// The hosts: both online and synced; edge2 killed (no DISCONNECT, no
	// goodbye): its will marks it offline.
	page.waitFor(`[...document.querySelectorAll("#hosts tbody tr")].filter(tr => tr.textContent.includes("online") && tr.textContent.includes("yes")).length === 2`, 10*time.Second)
	edge2.Kill()
	page.waitFor(`[...document.querySelectorAll("#hosts tbody tr")].some(tr => tr.textContent.includes("offline") && tr.textContent.includes("ipset"))`, 10*time.Second)
	page.waitFor(`[...document.querySelectorAll("#hosts tbody tr")].some(tr => tr.textContent.includes("online") && tr.textContent.includes("yes") && tr.textContent.includes("nft"))`, 10*time.Second)
	page.screenshot(filepath.Join(out, "web.png"), 1100, 0, false)
	page.screenshot(filepath.Join(out, "web-top.png"), 1100, 760, false)
	if os.Getenv("VALLUM_UPDATE_DOCS") == "1" {
		copyFile(t, filepath.Join(out, "web-top.png"), filepath.Join("..", "docs", "web.png"))
	}

	pageThrough(t, page)

	// Ban from the page: it reaches edge1's kernel set; unban from the page
	// takes it out.
	page.mustEval(`(document.querySelector("#list").value = "blacklist", document.querySelector("#list").dispatchEvent(new Event("change")), true)`, nil)
	page.mustEval(`(document.querySelector("#ban-prefix").value = "192.0.2.77", document.querySelector("#ban-timeout").value = "2h",
		document.querySelector("#ban-reason").value = "from the page", document.querySelector("#ban-btn").click(), true)`, nil)
	page.waitFor(`document.querySelector("#act-msg").textContent === "ban: 192.0.2.77"`, 10*time.Second)
	waitInSet(t, edge1, "192.0.2.77", true)
	page.waitFor(`document.querySelector('#bans tr[data-prefix="192.0.2.77"] button.unban')`, 5*time.Second)
	page.mustEval(`(document.querySelector('#bans tr[data-prefix="192.0.2.77"] button.unban').click(), true)`, nil)
	waitInSet(t, edge1, "192.0.2.77", false)
	page.waitFor(`!document.querySelector('#bans tr[data-prefix="192.0.2.77"]')`, 5*time.Second)

	page.screenshot(filepath.Join(out, "web-phone.png"), 390, 0, true)
	if errs := page.errors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}

	// A reporter looks, has no action in the page, and a POST it makes
	// itself, with its own page's token, is refused.
	rep := b.newTab(t, "reporter", "pw-of-reporter")
	rep.open("http://127.0.0.1:8080/")
	rep.waitFor(`document.querySelector("#who").textContent.includes("read only")`, 10*time.Second)
	var hidden bool
	rep.mustEval(`document.querySelector("#act").hidden && !document.querySelector("#bans button.unban")`, &hidden)
	if !hidden {
		t.Error("the reporter's page shows the ban form or unban buttons")
	}
	var status int
	rep.mustEval(`fetch("/api/me").then(r => r.json()).then(me => fetch("/api/ban", {method: "POST",
		headers: {"Content-Type": "application/json", "X-Vallum-Token": me.token},
		body: JSON.stringify({list: "blacklist", prefix: "192.0.2.78"})})).then(r => r.status)`, &status)
	if status != 403 {
		t.Errorf("a reporter's POST /api/ban: %d, want 403", status)
	}
	// A host's login is refused outright.
	req, _ := http.NewRequest("GET", "http://127.0.0.1:8080/api/lists", nil)
	req.SetBasicAuth("edge1", "pw-of-edge1")
	if resp, err := hub.HTTPClient().Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("a host's login: %v %v, want 401", resp.Status, err)
	} else {
		resp.Body.Close()
	}
	time.Sleep(200 * time.Millisecond) // a wrongly accepted ban would have reached edge1 by now
	waitInSet(t, edge1, "192.0.2.78", false)
}

// pageThrough pages the feed list's 100,000 bans: first, next, last,
// previous, and searches one address and a prefix.
func pageThrough(t *testing.T, page *tab) {
	t.Helper()
	page.mustEval(`(document.querySelector("#list").value = "feed", document.querySelector("#list").dispatchEvent(new Event("change")), true)`, nil)
	page.waitFor(`document.querySelector("#range").textContent === "1–50 of 100,000"`, 10*time.Second)
	page.mustEval(`(document.querySelector("#next").click(), true)`, nil)
	page.waitFor(`document.querySelector("#range").textContent === "51–100 of 100,000"`, 10*time.Second)
	start := time.Now()
	page.mustEval(`(document.querySelector("#last").click(), true)`, nil)
	page.waitFor(`document.querySelector("#range").textContent === "99,951–100,000 of 100,000"`, 10*time.Second)
	t.Logf("last page of 100,000 shown %v after the click", time.Since(start).Round(time.Millisecond))
	var rows int
	page.mustEval(`document.querySelectorAll("#bans tbody tr").length`, &rows)
	if rows != 50 {
		t.Errorf("last page: %d rows, want 50", rows)
	}
	page.mustEval(`(document.querySelector("#prev").click(), true)`, nil)
	page.waitFor(`document.querySelector("#range").textContent === "99,901–99,950 of 100,000"`, 10*time.Second)
	page.mustEval(`(document.querySelector("#q").value = "10.1.2.3", document.querySelector("#q").dispatchEvent(new Event("input")), true)`, nil)
	page.waitFor(`document.querySelector("#range").textContent === "1–1 of 1" && document.querySelector('#bans tr[data-prefix="10.1.2.3"]')`, 10*time.Second)
	page.mustEval(`(document.querySelector("#q").value = "10.1.2.0/24", document.querySelector("#q").dispatchEvent(new Event("input")), true)`, nil)
	page.waitFor(`document.querySelector("#range").textContent === "1–50 of 256"`, 10*time.Second)
	page.mustEval(`(document.querySelector("#q").value = "", document.querySelector("#q").dispatchEvent(new Event("input")), true)`, nil)
	page.waitFor(`document.querySelector("#range").textContent === "1–50 of 100,000"`, 10*time.Second)
}

// waitInSet waits until edge's nft set blacklist has (or no longer has) addr.
func waitInSet(t *testing.T, h *lab.Host, addr string, want bool) {
	t.Helper()
	err := lab.Eventually(20*time.Second, func() (bool, string) {
		got, err := h.NftPrefixes("inet", "vallum", "blacklist")
		if err != nil {
			return false, err.Error()
		}
		has := false
		for _, p := range got {
			has = has || p == addr
		}
		return has == want, fmt.Sprintf("%s in blacklist on %s: %v", addr, h.Name, has)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestWebMillion: a feed of 1,000,000 addresses imported into a hub with
// its web view on. The page's JSON endpoints count the million, page
// through it (first, next, last), and find an imported address by itself
// and a /24 of them by prefix search. It logs how long each answer took
// and the hub's resident memory with the web index holding the million
// (no timed assertion). VALLUM_E2E_FULL=1 only (a minute or more).
func TestWebMillion(t *testing.T) {
	if os.Getenv("VALLUM_E2E_FULL") != "1" {
		t.Skip("VALLUM_E2E_FULL=1 runs it")
	}
	const n = 1000000
	l, dir := newLab(t)
	hub := addHost(t, l, "hub")
	usersFile, u := writeUsers(t, dir, webUsers, "")
	hv := must[*lab.Proc](t)(hub.Start(dir, vallumBin, "broker", "--listen", "0.0.0.0:1883", "--users", usersFile,
		"-t", "blacklist", "--web", "127.0.0.1:8080", "--legacy-state=false", "--data-dir", filepath.Join(dir, "hub-data")))
	killAtEnd(t, &hv)
	if err := hv.WaitLog("web view listening", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	rss := sampleRSS(t, hv)
	feed, _ := millionFeed(t, dir, n)
	start := time.Now()
	if out, err := hub.Exec(vallumBin, "import", "blacklist", feed, "--timeout", "1d", "-h", "127.0.0.1",
		"-u", "admin", "--password-file", u["admin"].pwFile, "--data-dir", filepath.Join(dir, "cli")); err != nil {
		t.Fatalf("vallum import: %v\n%s", err, out)
	}
	imported := time.Since(start)
	api := func(path string, v any) time.Duration {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://127.0.0.1:8080"+path, nil)
		req.SetBasicAuth("reporter", "pw-of-reporter") // it looks as the page does
		began := time.Now()
		resp, err := hub.HTTPClient().Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s, %v", path, resp.Status, err)
		}
		return time.Since(began)
	}
	err := lab.Eventually(3*time.Minute, func() (bool, string) {
		var ls []web.List
		api("/api/lists", &ls)
		return len(ls) == 1 && ls[0].Count == n, fmt.Sprintf("lists %+v, want blacklist of %d", ls, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	counted := time.Since(start)
	var took []string
	page := func(q string, offset, total int, first string) {
		t.Helper()
		var pg web.Page
		d := api(fmt.Sprintf("/api/bans?list=blacklist&q=%s&offset=%d&limit=50", url.QueryEscape(q), offset), &pg)
		took = append(took, fmt.Sprintf("q=%q offset %d: %v", q, offset, d.Round(time.Microsecond)))
		want := min(50, total-offset)
		if pg.Total != total || len(pg.Bans) != want || want > 0 && first != "" && pg.Bans[0].Prefix != first {
			t.Errorf("page q=%q offset %d: %d bans of %d, first %v; want %d of %d, first %q", q, offset, len(pg.Bans), pg.Total, pg.Bans[:min(1, len(pg.Bans))], want, total, first)
		}
		for _, b := range pg.Bans {
			if b.Origin != "import:million.netset" || b.Expires == 0 {
				t.Errorf("page q=%q: ban %+v, want the feed's origin and a day's expiry", q, b)
				break
			}
		}
	}
	page("", 0, n, "")
	page("", 50, n, "")
	page("", n-50, n, "")
	page("100.64.3.7", 0, 1, "100.64.3.7")
	page("100.70.1.0/24", 0, 256, "")
	page("100.70.1.0/24", 250, 256, "")
	page("203.0.113.9", 0, 0, "")
	t.Logf("1,000,000 imported into a hub with --web: the import returned after %v, the page's count said 1,000,000 after %v; answers: %s",
		imported.Round(time.Millisecond), counted.Round(time.Millisecond), strings.Join(took, ", "))
	waitStill(t, hv) // as TestImportMillion measures the hub without the index
	still, _ := hv.RSS()
	t.Logf("the hub's RSS with the web index of 1,000,000: %d MB once still, %d MB at its peak; load average %s", still>>20, rss()>>20, loadAvg())
}
