package web

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// fakeHub is an Index with logins and recorded actions.
type fakeHub struct {
	*Index
	mu   sync.Mutex
	acts []string
}

func (h *fakeHub) Login(user, pw string) (Role, []string) {
	if pw != user+"-pw" {
		return RoleNone, nil
	}
	switch user {
	case "admin":
		return RoleAdmin, nil
	case "rep":
		return RoleViewer, nil
	case "site1":
		return RoleViewer, []string{"site1/blacklist"}
	}
	return RoleNone, nil // "edge1", a host
}

func (h *fakeHub) note(s string) error {
	h.mu.Lock()
	h.acts = append(h.acts, s)
	h.mu.Unlock()
	return nil
}

func (h *fakeHub) Ban(user, list string, p netip.Prefix, ttl time.Duration, reason string) error {
	return h.note(fmt.Sprintf("ban %s %s %s %v %s", user, list, p, ttl, reason))
}
func (h *fakeHub) Unban(user, list string, p netip.Prefix) error {
	return h.note(fmt.Sprintf("unban %s %s %s", user, list, p))
}
func (h *fakeHub) Allow(string, netip.Prefix, string) error { return ErrNoAllowlist }
func (h *fakeHub) CanAllow() bool                           { return false }

func (h *fakeHub) actions() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.acts...)
}

func newTest(t *testing.T) (*fakeHub, *httptest.Server) {
	t.Helper()
	hub := &fakeHub{Index: NewIndex([]string{"blacklist", "site1/blacklist"})}
	srv := httptest.NewServer(New(hub, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	return hub, srv
}

// ban feeds a ban as the broker would carry it.
func ban(x *Index, list, prefix string, at time.Time, ttl time.Duration, reason, origin string, live bool) {
	p := netip.MustParsePrefix(prefix)
	st := wire.State{At: at, Reason: reason, Origin: origin}
	if ttl > 0 {
		st.Expires = at.Add(ttl)
	}
	x.Feed(wire.StateTopic(list, p), wire.EncodeState(st), live)
}

func do(t *testing.T, srv *httptest.Server, method, path, user string, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if user != "" {
		req.SetBasicAuth(user, user+"-pw")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req) // the stream ends by then
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func tokenOf(t *testing.T, srv *httptest.Server, user string) string {
	t.Helper()
	code, body := do(t, srv, "GET", "/api/me", user, "", nil)
	var me struct{ Token string }
	if code != 200 || json.Unmarshal([]byte(body), &me) != nil || me.Token == "" {
		t.Fatalf("GET /api/me as %s: %d %s", user, code, body)
	}
	return me.Token
}

// TestAuth: nobody without a login, no host, no wrong password; a reporter
// looks but cannot act; an admin acts only with the page's token and from
// the page's origin.
func TestAuth(t *testing.T) {
	hub, srv := newTest(t)
	for _, path := range []string{"/", "/app.js", "/api/lists", "/api/bans?list=blacklist", "/api/hosts", "/api/events"} {
		if code, _ := do(t, srv, "GET", path, "", "", nil); code != 401 {
			t.Errorf("GET %s without a login: %d, want 401", path, code)
		}
		if code, _ := do(t, srv, "GET", path, "edge1", "", nil); code != 401 {
			t.Errorf("GET %s as a host: %d, want 401", path, code)
		}
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/lists", nil)
	req.SetBasicAuth("admin", "wrong")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("GET with a wrong password: %v %v, want 401", resp.StatusCode, err)
	}
	if code, body := do(t, srv, "GET", "/api/lists", "rep", "", nil); code != 200 || !strings.Contains(body, `"blacklist"`) {
		t.Errorf("GET /api/lists as a reporter: %d %s", code, body)
	}

	ban := `{"list":"blacklist","prefix":"203.0.113.7","timeout":"1h","reason":"sshd"}`
	repTok := tokenOf(t, srv, "rep")
	if code, _ := do(t, srv, "POST", "/api/ban", "rep", ban, map[string]string{"X-Vallum-Token": repTok}); code != 403 {
		t.Errorf("POST /api/ban as a reporter: %d, want 403", code)
	}
	tok := tokenOf(t, srv, "admin")
	for _, tt := range []struct {
		name string
		hdr  map[string]string
	}{
		{"no token (a form of another site)", nil},
		{"the reporter's token", map[string]string{"X-Vallum-Token": repTok}},
		{"another origin", map[string]string{"X-Vallum-Token": tok, "Origin": "http://evil.example"}},
		{"a cross-site fetch", map[string]string{"X-Vallum-Token": tok, "Sec-Fetch-Site": "cross-site"}},
	} {
		if code, _ := do(t, srv, "POST", "/api/ban", "admin", ban, tt.hdr); code != 403 {
			t.Errorf("POST /api/ban as admin with %s: %d, want 403", tt.name, code)
		}
	}
	if code, body := do(t, srv, "GET", "/api/ban", "admin", "", nil); code != 405 {
		t.Errorf("GET /api/ban: %d %s, want 405", code, body)
	}
	if got := hub.actions(); len(got) != 0 {
		t.Fatalf("actions done by refused requests: %v", got)
	}
	origin := map[string]string{"X-Vallum-Token": tok, "Origin": srv.URL, "Sec-Fetch-Site": "same-origin"}
	if code, body := do(t, srv, "POST", "/api/ban", "admin", ban, origin); code != 200 {
		t.Errorf("POST /api/ban as admin from the page: %d %s", code, body)
	}
	if code, body := do(t, srv, "POST", "/api/unban", "admin", `{"list":"blacklist","prefix":"203.0.113.7"}`, origin); code != 200 {
		t.Errorf("POST /api/unban as admin from the page: %d %s", code, body)
	}
	if code, _ := do(t, srv, "POST", "/api/ban", "admin", `{"list":"blacklist","prefix":"junk"}`, origin); code != 400 {
		t.Errorf("POST /api/ban of junk: %d, want 400", code)
	}
	if code, _ := do(t, srv, "POST", "/api/allow", "admin", `{"prefix":"192.0.2.1"}`, origin); code != 501 {
		t.Errorf("POST /api/allow without an allowlist: %d, want 501", code)
	}
	want := []string{"ban admin blacklist 203.0.113.7/32 1h0m0s sshd", "unban admin blacklist 203.0.113.7/32"}
	if got := hub.actions(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("actions %q, want %q", got, want)
	}
}

func getPage(t *testing.T, srv *httptest.Server, list, q string, offset int) Page {
	t.Helper()
	path := fmt.Sprintf("/api/bans?list=%s&q=%s&offset=%d", list, q, offset)
	code, body := do(t, srv, "GET", path, "rep", "", nil)
	var pg Page
	if code != 200 || json.Unmarshal([]byte(body), &pg) != nil {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return pg
}

func prefixes(pg Page) string {
	var s []string
	for _, b := range pg.Bans {
		s = append(s, b.Prefix)
	}
	return strings.Join(s, " ")
}

// TestPaging: 100,000 bans loaded in the broker's order come newest first,
// in pages of PageSize, to the last; unbans and re-bans move them.
func TestPaging(t *testing.T) {
	hub, srv := newTest(t)
	t0 := time.Now().Add(-time.Hour)
	const n = 100000
	for i := n - 1; i >= 0; i-- { // the broker's order is not the bans' order
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		ban(hub.Index, "blacklist", a.String()+"/32", t0.Add(time.Duration(i)*time.Millisecond), 0, "", "", false)
	}
	hub.Settle()
	first := getPage(t, srv, "blacklist", "", 0)
	if first.Total != n || len(first.Bans) != PageSize || first.Bans[0].Prefix != "10.1.134.159" || first.Bans[1].Prefix != "10.1.134.158" {
		t.Fatalf("first page: total %d, %d bans, starting %s", first.Total, len(first.Bans), prefixes(first))
	}
	last := getPage(t, srv, "blacklist", "", n-10)
	if len(last.Bans) != 10 || last.Bans[9].Prefix != "10.0.0.0" {
		t.Errorf("last page: %s, want 10 ending with 10.0.0.0", prefixes(last))
	}
	// Pages near the newest end are walked from it, the others from the
	// oldest: both give the ban at each offset.
	for _, off := range []int{0, 49999, 50000, 50001, 77777, n - 1} {
		i := n - 1 - off
		want := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
		if pg := getPage(t, srv, "blacklist", "", off); pg.Bans[0].Prefix != want {
			t.Errorf("offset %d: first ban %s, want %s", off, pg.Bans[0].Prefix, want)
		}
	}
	if past := getPage(t, srv, "blacklist", "", n+50); len(past.Bans) != 0 || past.Total != n {
		t.Errorf("past the end: %d bans, total %d", len(past.Bans), past.Total)
	}
	// Unban the newest half: the first page is the older half's newest.
	for i := n / 2; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		hub.Feed(wire.StateTopic("blacklist", netip.PrefixFrom(a, 32)), nil, true)
	}
	ban(hub.Index, "blacklist", "10.0.0.5/32", time.Now(), time.Hour, "again", "", true) // a re-ban: newest
	pg := getPage(t, srv, "blacklist", "", 0)
	if pg.Total != n/2 || pg.Bans[0].Prefix != "10.0.0.5" || pg.Bans[1].Prefix != "10.0.195.79" {
		t.Errorf("after unbans and a re-ban: total %d, first %s", pg.Total, prefixes(pg)[:40])
	}
	if other := getPage(t, srv, "site1/blacklist", "", 0); other.Total != 0 {
		t.Errorf("the other list has %d bans, want 0", other.Total)
	}
	if code, _ := do(t, srv, "GET", "/api/bans?list=nope", "rep", "", nil); code != 404 {
		t.Errorf("unknown list: %d, want 404", code)
	}
}

// TestSearch: an address finds the bans that cover it, a prefix the bans
// inside it, text the addresses that contain it and equal reasons or
// origins.
func TestSearch(t *testing.T) {
	hub, srv := newTest(t)
	now := time.Now()
	ban(hub.Index, "blacklist", "198.51.100.0/24", now, 0, "spamhaus", "feed", true)
	ban(hub.Index, "blacklist", "203.0.113.7/32", now, 0, "sshd", "edge1", true)
	ban(hub.Index, "blacklist", "203.0.113.9/32", now, 0, "SSHD", "edge2", true)
	ban(hub.Index, "blacklist", "2001:db8::/64", now, 0, "", "edge2", true)
	for q, want := range map[string]string{
		"198.51.100.42":   "198.51.100.0/24",
		"203.0.113.0/24":  "203.0.113.9 203.0.113.7",
		"203.0.113.":      "203.0.113.9 203.0.113.7",
		"2001:db8::1":     "2001:db8::/64",
		"sshd":            "203.0.113.9 203.0.113.7",
		"edge2":           "2001:db8::/64 203.0.113.9",
		"192.0.2.1":       "",
		"nothing at all":  "",
		"":                "2001:db8::/64 203.0.113.9 203.0.113.7 198.51.100.0/24",
		"  203.0.113.7  ": "203.0.113.7",
	} {
		pg := getPage(t, srv, "blacklist", strings.ReplaceAll(q, " ", "%20"), 0)
		if got := prefixes(pg); got != want || pg.Total != len(pg.Bans) {
			t.Errorf("search %q: %q (total %d), want %q", q, got, pg.Total, want)
		}
	}
	esc := wire.State{At: now.Add(time.Millisecond), Reason: "sshd", Count: 3} // a later ban, escalated
	hub.Feed(wire.StateTopic("blacklist", netip.MustParsePrefix("203.0.113.7/32")), wire.EncodeState(esc), true)
	if pg := getPage(t, srv, "blacklist", "203.0.113.7", 0); len(pg.Bans) != 1 || pg.Bans[0].Count != 3 {
		t.Errorf("escalated ban: %+v, want count 3", pg.Bans)
	}
}

// TestListsSummary: counts, bans per hour of the last day and the top
// reasons and origins follow bans and unbans.
func TestListsSummary(t *testing.T) {
	hub, _ := newTest(t)
	now := time.Now()
	for i := range 5 {
		ban(hub.Index, "blacklist", fmt.Sprintf("192.0.2.%d/32", i+1), now, 0, "sshd", "edge1", true)
	}
	ban(hub.Index, "blacklist", "198.51.100.1/32", now.Add(-3*time.Hour), 0, "portscan", "edge2", true)
	ban(hub.Index, "blacklist", "198.51.100.2/32", now.Add(-30*time.Hour), 0, "old", "edge2", true)
	hub.Feed(wire.StateTopic("blacklist", netip.MustParsePrefix("192.0.2.1/32")), nil, true)
	l := hub.Lists()[0]
	if l.Root != "blacklist" || l.Count != 6 {
		t.Fatalf("list %s count %d, want blacklist 6", l.Root, l.Count)
	}
	if l.PerHour[23] != 5 || l.PerHour[20] != 1 || sum(l.PerHour) != 6 {
		t.Errorf("per hour %v, want 5 this hour and 1 three hours ago", l.PerHour)
	}
	if len(l.Reasons) != 3 || l.Reasons[0] != (Count{"sshd", 4}) || l.Origins[0] != (Count{"edge1", 4}) || l.Origins[1] != (Count{"edge2", 2}) {
		t.Errorf("top reasons %v, origins %v", l.Reasons, l.Origins)
	}
}

func sum(s []int) int {
	n := 0
	for _, v := range s {
		n += v
	}
	return n
}

// TestEvents: the live stream carries bans, unbans, expiries, refusals and
// host changes, as server-sent events (to an admin); retained messages
// loaded at start are not events.
func TestEvents(t *testing.T) {
	hub, srv := newTest(t)
	req, _ := http.NewRequest("GET", srv.URL+"/api/events", nil)
	req.SetBasicAuth("admin", "admin-pw")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req) // the stream ends by then
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	now := time.Now()
	ban(hub.Index, "blacklist", "192.0.2.99/32", now, 0, "", "", false) // loaded: no event
	ban(hub.Index, "blacklist", "203.0.113.7/32", now, time.Hour, "sshd", "edge1", true)
	hub.Feed(wire.StateTopic("blacklist", netip.MustParsePrefix("203.0.113.7/32")), nil, true)
	ban(hub.Index, "blacklist", "203.0.113.8/32", now.Add(-time.Hour), time.Hour, "", "", true)
	hub.Feed(wire.StateTopic("blacklist", netip.MustParsePrefix("203.0.113.8/32")), nil, true)
	hub.Refused("acl_publish", "may not publish on this topic", "edge2", "blacklist/add")
	hub.Feed(wire.HostTopic("edge1"), wire.EncodeHostStatus(wire.HostStatus{Online: true}), true)
	want := []string{"ban 203.0.113.7", "unban 203.0.113.7", "ban 203.0.113.8", "expired 203.0.113.8", "refused ", "host "}
	r := bufio.NewReader(resp.Body)
	for _, w := range want {
		var e Event
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended before %q: %v", w, err)
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				if err := json.Unmarshal([]byte(data), &e); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		if got := e.Kind + " " + e.Prefix; got != w {
			t.Errorf("event %q, want %q", got, w)
		}
	}
	hub.Feed(wire.HostTopic("edge2"), wire.EncodeHostStatus(wire.HostStatus{At: 1700000000}), false)
	if hs := hub.Hosts(); len(hs) != 2 || hs[0].ID != "edge1" || !hs[0].Online || time.Since(time.Unix(hs[0].Seen, 0)) > time.Minute ||
		hs[1].Online || hs[1].Seen != 1700000000 {
		t.Errorf("hosts %+v, want edge1 online seen now, edge2 offline seen when it said (loaded at start)", hs)
	}
}

// TestViewerLists: a reporter limited to some lists sees those only: in
// the summary, the pages and the live stream, which carries no refusal
// (they name other lists' users and topics).
func TestViewerLists(t *testing.T) {
	hub, srv := newTest(t)
	now := time.Now()
	ban(hub.Index, "blacklist", "192.0.2.1/32", now, 0, "secret", "", true)
	ban(hub.Index, "site1/blacklist", "192.0.2.2/32", now, 0, "", "", true)
	if code, body := do(t, srv, "GET", "/api/lists", "site1", "", nil); code != 200 || strings.Contains(body, `"root":"blacklist"`) || !strings.Contains(body, `"root":"site1/blacklist"`) {
		t.Errorf("lists of site1: %d %s", code, body)
	}
	if code, body := do(t, srv, "GET", "/api/bans?list=blacklist", "site1", "", nil); code != 404 || strings.Contains(body, "192.0.2.1") {
		t.Errorf("bans of another list: %d %s, want 404", code, body)
	}
	if pg := getPageAs(t, srv, "site1", "site1/blacklist"); pg.Total != 1 {
		t.Errorf("its own list: %d bans, want 1", pg.Total)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/events", nil)
	req.SetBasicAuth("site1", "site1-pw")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req) // the stream ends by then
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	hub.Refused("acl_publish", "may not publish on this topic", "edge2", "blacklist/add")
	ban(hub.Index, "blacklist", "192.0.2.3/32", now, 0, "", "", true)
	ban(hub.Index, "site1/blacklist", "192.0.2.4/32", now, 0, "", "", true)
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			if !strings.Contains(data, "192.0.2.4") {
				t.Errorf("site1's stream: %s, want only its list's ban 192.0.2.4", data)
			}
			break
		}
	}
}

func getPageAs(t *testing.T, srv *httptest.Server, user, list string) Page {
	t.Helper()
	code, body := do(t, srv, "GET", "/api/bans?list="+list, user, "", nil)
	var pg Page
	if code != 200 || json.Unmarshal([]byte(body), &pg) != nil {
		t.Fatalf("GET bans of %s as %s: %d %s", list, user, code, body)
	}
	return pg
}
