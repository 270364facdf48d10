// Package web is the hub's web view (vallum broker --web ADDR): one page
// that shows every list (count, bans per hour, top reasons and origins),
// the hosts' statuses, the bans (searched and paged server-side) and a
// live stream of what happens, and lets an admin ban and unban. It reads
// and acts through Hub, which the broker implements (broker/web.go), so
// that it is tested without one.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// Role is what a login may do on the page.
type Role int

const (
	RoleNone   Role = iota // refused: unknown, wrong password, or a host
	RoleViewer             // looks (the broker's reporters)
	RoleAdmin              // looks and acts
)

// Hub is what the page reads and does.
type Hub interface {
	Lists() []List
	Bans(list, q string, offset, limit int) (Page, bool)
	Hosts() []Host
	Watch() (<-chan Event, func())
	// Ban and Unban publish as `vallum ban` does: the state, then the
	// event. An error says why the ban was refused.
	Ban(user, list string, p netip.Prefix, ttl time.Duration, reason string) error
	Unban(user, list string, p netip.Prefix) error
	// Allow adds p to the shared allowlist, with a comment; ErrNoAllowlist
	// where the hub has none (the page then shows no allow button).
	Allow(user string, p netip.Prefix, comment string) error
	CanAllow() bool
	// Login checks a login: what it may do, and the lists it may see
	// (nil: every list).
	Login(user, password string) (Role, []string)
}

// ErrNoAllowlist is Hub.Allow's answer where there is no shared allowlist.
var ErrNoAllowlist = errors.New("this hub has no shared allowlist")

//go:embed page
var page embed.FS

// Server serves the page and its API.
type Server struct {
	hub  Hub
	log  *slog.Logger
	key  []byte // for the CSRF tokens: random per process
	mux  *http.ServeMux
	ping time.Duration // keepalive of the live stream
}

// PageSize is the number of bans a page shows, and the most one asks for.
const PageSize = 50

// New returns the page's server over hub.
func New(hub Hub, log *slog.Logger) *Server {
	s := &Server{hub: hub, log: log, key: make([]byte, 32), mux: http.NewServeMux(), ping: 15 * time.Second}
	_, _ = rand.Read(s.key) // never fails (crypto/rand)
	s.mux.HandleFunc("GET /{$}", s.file("page/index.html", "text/html; charset=utf-8"))
	s.mux.HandleFunc("GET /app.js", s.file("page/app.js", "text/javascript; charset=utf-8"))
	s.mux.HandleFunc("GET /app.css", s.file("page/app.css", "text/css; charset=utf-8"))
	s.mux.HandleFunc("GET /api/me", s.me)
	s.mux.HandleFunc("GET /api/lists", s.lists)
	s.mux.HandleFunc("GET /api/hosts", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.hub.Hosts()) })
	s.mux.HandleFunc("GET /api/bans", s.bans)
	s.mux.HandleFunc("GET /api/events", s.events)
	s.mux.HandleFunc("POST /api/ban", s.act(s.ban))
	s.mux.HandleFunc("POST /api/unban", s.act(s.unban))
	s.mux.HandleFunc("POST /api/allow", s.act(s.allow))
	return s
}

type ctxKey struct{}

type login struct {
	user  string
	role  Role
	lists []string // nil: every list
}

// sees reports whether the login may see list.
func (l login) sees(list string) bool { return l.lists == nil || slices.Contains(l.lists, list) }

// ServeHTTP checks the login (HTTP basic auth against the broker's users)
// and the headers every answer carries, then serves.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	user, pw, ok := r.BasicAuth()
	role, lists := RoleNone, []string(nil)
	if ok {
		role, lists = s.hub.Login(user, pw)
	}
	if role == RoleNone {
		h.Set("WWW-Authenticate", `Basic realm="vallum", charset="UTF-8"`)
		if ok {
			s.log.Warn("web: refused login", "user", wire.Clip(user), "remote", r.RemoteAddr)
		}
		http.Error(w, "log in as an admin or a reporter of the broker", http.StatusUnauthorized)
		return
	}
	s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, login{user, role, lists})))
}

func loginOf(r *http.Request) login { l, _ := r.Context().Value(ctxKey{}).(login); return l }

// file and act are not inlined: each of their closures is then one
// function, not one copy per route (kilobytes on a router's build).
//
//go:noinline
func (s *Server) file(name, typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := page.ReadFile(name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", typ)
		_, _ = w.Write(b)
	}
}

// token is the CSRF token of user: a page of another origin can neither
// read it (same-origin policy) nor send it (a custom header needs CORS,
// which this server never grants).
func (s *Server) token(user string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	l := loginOf(r)
	writeJSON(w, map[string]any{"user": l.user, "admin": l.role == RoleAdmin,
		"token": s.token(l.user), "allow": s.hub.CanAllow(), "page_size": PageSize})
}

// lists summarises the lists the login may see.
func (s *Server) lists(w http.ResponseWriter, r *http.Request) {
	l := loginOf(r)
	out := []List{}
	for _, li := range s.hub.Lists() {
		if l.sees(li.Root) {
			out = append(out, li)
		}
	}
	writeJSON(w, out)
}

func (s *Server) bans(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 || limit > PageSize {
		limit = PageSize
	}
	pg, ok := s.hub.Bans(q.Get("list"), q.Get("q"), max(offset, 0), limit)
	if !ok || !loginOf(r).sees(q.Get("list")) {
		writeError(w, http.StatusNotFound, "no list "+q.Get("list"))
		return
	}
	writeJSON(w, pg)
}

// events streams the live events as server-sent events: those of the
// lists the login sees, and the broker's refusals to admins only (they
// name users and topics of every list).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	l := loginOf(r)
	ch, stop := s.hub.Watch()
	defer stop()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "retry: 2000\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	ping := time.NewTicker(s.ping)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
		case e := <-ch:
			if e.List != "" && !l.sees(e.List) || e.Kind == EventRefused && l.role != RoleAdmin {
				continue
			}
			b, _ := json.Marshal(e)
			fmt.Fprintf(w, "data: %s\n\n", b)
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// action is what the page asks an admin action to do.
type action struct {
	List    string `json:"list"`
	Prefix  string `json:"prefix"`
	Timeout string `json:"timeout"`
	Reason  string `json:"reason"`
}

// act checks that an action comes from an admin, from this page: the
// CSRF token in its header and, when the browser says where the request
// comes from, the same origin.
//
//go:noinline
func (s *Server) act(f func(login, action, netip.Prefix) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		l := loginOf(r)
		if l.role != RoleAdmin {
			writeError(w, http.StatusForbidden, "only an admin may ban, unban or allow")
			return
		}
		if !s.sameOrigin(r, l) {
			writeError(w, http.StatusForbidden, "cross-site request refused")
			return
		}
		var a action
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&a); err != nil {
			writeError(w, http.StatusBadRequest, "bad request: "+err.Error())
			return
		}
		p, err := wire.ParsePrefix(strings.TrimSpace(a.Prefix))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := f(l, a, p); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, ErrNoAllowlist) {
				code = http.StatusNotImplemented
			}
			writeError(w, code, err.Error())
			return
		}
		s.log.Info("web: "+strings.TrimPrefix(r.URL.Path, "/api/"), "user", l.user, "list", a.List, "prefix", wire.FormatPrefix(p))
		writeJSON(w, map[string]string{"ok": wire.FormatPrefix(p)})
	}
}

func (s *Server) sameOrigin(r *http.Request, l login) bool {
	tok := r.Header.Get("X-Vallum-Token")
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.token(l.user))) != 1 {
		return false
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		return false
	}
	return true
}

func (s *Server) ban(l login, a action, p netip.Prefix) error {
	ttl, err := ParseTimeout(a.Timeout)
	if err != nil {
		return err
	}
	reason := strings.TrimSpace(a.Reason)
	if len(reason) > 64 {
		return errors.New("a reason of at most 64 bytes")
	}
	return s.hub.Ban(l.user, a.List, p, ttl, reason)
}

func (s *Server) unban(l login, a action, p netip.Prefix) error {
	return s.hub.Unban(l.user, a.List, p)
}

func (s *Server) allow(l login, a action, p netip.Prefix) error {
	comment := strings.TrimSpace(a.Reason)
	if len(comment) > 64 {
		return errors.New("a comment of at most 64 bytes")
	}
	return s.hub.Allow(l.user, p, comment)
}

// ParseTimeout reads a ban's duration as `vallum ban --timeout` does:
// seconds (3600), a Go duration (90m, 1h) or days (7d); "", 0 and -1 are
// permanent.
func ParseTimeout(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "-1" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return min(time.Duration(n)*time.Second, maxTTL), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseInt(days, 10, 64); err == nil && n >= 0 && n < 100000 {
			return min(time.Duration(n)*24*time.Hour, maxTTL), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("timeout %q: want seconds or a duration such as 3600, 90m, 1h or 7d", s)
	}
	return min(d, maxTTL), nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// maxTTL is the kernel's longest timeout: longer bans are clamped to it.
const maxTTL = time.Duration(wire.MaxTimeout) * time.Second
