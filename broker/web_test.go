//go:build !vallum_noweb

package broker

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/web"
	"github.com/vallum/vallum/internal/wire"
)

// webFleet is fleet with the web view on.
func webFleet(t *testing.T) (b *Broker, mqttURL, webURL string) {
	t.Helper()
	users := writeUsers(t, fleetUsers, "edge1", "edge2", "rep", "other", "admin")
	b = start(t, Options{Listeners: []Listener{local(KindTCP)}, UsersFile: users, Lists: []string{"blacklist"},
		Web: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	return b, url(t, b, KindTCP), "http://" + b.WebAddr()
}

func webDo(t *testing.T, method, u, user, body, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.SetBasicAuth(user, user)
	if token != "" {
		req.Header.Set("X-Vallum-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWebHub: the page's logins are the broker's users (hosts refused);
// an admin's ban from the page is the retained state and the event that
// `vallum ban` sends, and the page's list shows it; an allowlisted
// address is refused; an unban deletes the state; a host's status shows.
func TestWebHub(t *testing.T) {
	_, mu, wu := webFleet(t)
	if code, _ := webDo(t, "GET", wu+"/api/lists", "edge1", "", ""); code != 401 {
		t.Errorf("a host's login: %d, want 401", code)
	}
	if code, _ := webDo(t, "GET", wu+"/api/lists", "rep", "", ""); code != 200 {
		t.Errorf("a reporter's login: %d, want 200", code)
	}
	_, me := webDo(t, "GET", wu+"/api/me", "admin", "", "")
	var m struct{ Token string }
	if err := json.Unmarshal([]byte(me), &m); err != nil {
		t.Fatal(err)
	}
	admin := mustDial(t, mu, withUser("admin", "admin"))
	admin.sub(t, "blacklist/add", 1)
	code, body := webDo(t, "POST", wu+"/api/ban", "admin", `{"list":"blacklist","prefix":"203.0.113.7","timeout":"1h","reason":"by hand"}`, m.Token)
	if code != 200 {
		t.Fatalf("ban from the page: %d %s", code, body)
	}
	if ev := admin.until(t, "blacklist/add", 5*time.Second); ev.payload != "203.0.113.7 timeout 3600" {
		t.Errorf("event %q", ev.payload)
	}
	states := drain(t, admin, "blacklist/ban/#")
	st, err := wire.DecodeState([]byte(states["blacklist/ban/203.0.113.7"]))
	if err != nil || st.Reason != "by hand" || st.Origin != "web:admin" || time.Until(st.Expires) < 59*time.Minute {
		t.Errorf("state %+v (%v), want reason, origin web:admin, 1 h", st, err)
	}
	var pg web.Page
	_, body = webDo(t, "GET", wu+"/api/bans?list=blacklist", "rep", "", "")
	if err := json.Unmarshal([]byte(body), &pg); err != nil || pg.Total != 1 || pg.Bans[0].Prefix != "203.0.113.7" {
		t.Errorf("page %s", body)
	}
	if code, body := webDo(t, "POST", wu+"/api/ban", "admin", `{"list":"blacklist","prefix":"127.0.0.1"}`, m.Token); code != 400 {
		t.Errorf("ban of loopback: %d %s, want 400", code, body)
	}
	if code, body := webDo(t, "POST", wu+"/api/ban", "admin", `{"list":"other","prefix":"192.0.2.1"}`, m.Token); code != 400 {
		t.Errorf("ban on a list the hub does not serve: %d %s, want 400", code, body)
	}
	if code, body := webDo(t, "POST", wu+"/api/unban", "admin", `{"list":"blacklist","prefix":"203.0.113.7"}`, m.Token); code != 200 {
		t.Fatalf("unban from the page: %d %s", code, body)
	}
	late := mustDial(t, mu, withUser("admin", "admin"))
	if got := drain(t, late, "blacklist/ban/#"); len(got) != 0 {
		t.Errorf("states after the unban: %v", got)
	}
	_, body = webDo(t, "GET", wu+"/api/bans?list=blacklist", "rep", "", "")
	if !strings.Contains(body, `"total":0`) {
		t.Errorf("page after the unban: %s", body)
	}

	// Allow: the retained entry of the shared allowlist, as branch allow
	// documents it.
	if code, body := webDo(t, "POST", wu+"/api/allow", "admin", `{"prefix":"198.51.100.0/24","reason":"office"}`, m.Token); code != 200 {
		t.Fatalf("allow from the page: %d %s", code, body)
	}
	allows := drain(t, late, "vallum/allow/#")
	var entry struct {
		At              int64
		Comment, Origin string
	}
	if err := json.Unmarshal([]byte(allows["vallum/allow/198.51.100.0/24"]), &entry); err != nil ||
		entry.Comment != "office" || entry.Origin != "web:admin" || time.Since(time.UnixMilli(entry.At)) > time.Minute {
		t.Errorf("allow entries %v, want 198.51.100.0/24 with comment office from web:admin", allows)
	}
	if code, body := webDo(t, "POST", wu+"/api/allow", "admin", `{"prefix":"10.0.0.0/7"}`, m.Token); code != 400 {
		t.Errorf("allow of a prefix broader than the limit: %d %s, want 400", code, body)
	}
	if code, _ := webDo(t, "POST", wu+"/api/allow", "rep", `{"prefix":"198.51.100.0/24"}`, m.Token); code != 403 {
		t.Errorf("allow by a reporter: %d, want 403", code)
	}

	host := mustDial(t, mu, withUser("edge1", "edge1"), withID("vallum-edge1"))
	host.pub(t, "vallum/hosts/vallum-edge1", 1, true, `{"online":true,"synced":true,"version":"v1"}`)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = webDo(t, "GET", wu+"/api/hosts", "rep", "", "")
		if strings.Contains(body, `"id":"vallum-edge1"`) && strings.Contains(body, `"version":"v1"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts %s, want vallum-edge1", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWebNeedsUsers: without a users file nobody could log in: refused at
// start, saying what to give.
func TestWebNeedsUsers(t *testing.T) {
	_, err := New(Options{Listeners: []Listener{local(KindTCP)}, Lists: []string{"blacklist"}, Web: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "--users") {
		t.Errorf("New with --web and no users: %v, want an error naming --users", err)
	}
}
