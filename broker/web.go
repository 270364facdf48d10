//go:build !vallum_noweb

package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/web"
	"github.com/vallum/vallum/internal/wire"
)

// webHub is the hub's side of the web view (internal/web): an index that
// the keeper's inline subscriptions feed with every state of its lists
// (the keeper itself keeps no reasons nor order), the hosts' statuses
// from an inline subscription of its own, the broker's refusals, and the
// page's actions published through the inline client as `vallum ban`
// does: the state, then the event.
type webHub struct {
	*web.Index
	b     *Broker
	guard *guard.Guard
	ln    net.Listener
	log   *slog.Logger
}

// WebBuilt says whether this build has the web view (Options.Web).
const WebBuilt = true

const webBuilt = WebBuilt

// newWebHub binds addr. It needs the users file: the page's logins are
// the broker's users. The hosts' statuses come from the hub's own
// subscription (hosts.go).
func newWebHub(b *Broker, addr string, a *authHook) (*webHub, error) {
	if a.users == nil {
		return nil, errors.New("--web needs the broker's users (--users FILE): admins and reporters log in to the page with their MQTT password")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--web %s: %w", addr, err)
	}
	k := b.opts.Keeper
	h := &webHub{Index: web.NewIndex(b.roots), b: b, ln: ln, guard: guard.New(k.Allow, k.MinBitsV4, k.MinBitsV6),
		log: b.opts.Logger.With("component", "web")}
	if !isLoopback(ln.Addr()) {
		h.log.Warn("the web view is served over plain HTTP on a network address: passwords cross the network in clear; put it behind a TLS proxy or on 127.0.0.1", "listen", ln.Addr().String())
	}
	return h, nil
}

func isLoopback(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().IsLoopback()
}

// load orders what was loaded: the keeper's load fed the lists, the
// hosts' load their statuses.
func (h *webHub) load() { h.Settle() }

// serve serves the page until ctx is done.
func (h *webHub) serve(ctx context.Context) {
	s := &http.Server{Handler: web.New(h, h.log), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }} // ends the live streams
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(sctx)
	}()
	h.log.Info("web view listening", "addr", "http://"+h.ln.Addr().String())
	if err := s.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		h.log.Error("web view stopped", "err", err)
	}
}

// validateWeb adds to errs what is wrong with Options.Web.
func (o *Options) validateWeb(errs *[]error) {
	if o.Web == "" {
		return
	}
	if _, _, err := net.SplitHostPort(o.Web); err != nil {
		*errs = append(*errs, fmt.Errorf("--web %q: want HOST:PORT (127.0.0.1:8080): %v", o.Web, err))
	}
	if o.UsersFile == "" {
		*errs = append(*errs, errors.New("--web needs the broker's users (--users FILE): admins and reporters log in to the page with their MQTT password"))
	}
}

// startWeb starts the web view's hub side when Options.Web asks for it.
func (b *Broker) startWeb() error {
	if b.opts.Web == "" {
		return nil
	}
	h, err := newWebHub(b, b.opts.Web, b.auth)
	if err != nil {
		return err
	}
	b.web = h
	b.ref.tap = h.Refused
	return nil
}

// closeWeb closes the web view's listener when Run will not.
func (b *Broker) closeWeb() {
	if b.web != nil {
		b.web.ln.Close()
	}
}

// WebAddr is where the web view listens, "" without one.
func (b *Broker) WebAddr() string {
	if b.web == nil {
		return ""
	}
	return b.web.ln.Addr().String()
}

// Login checks a page's login against the broker's users: admins act,
// reporters look at the lists they may read over MQTT, hosts and others
// are refused.
func (h *webHub) Login(user, password string) (web.Role, []string) {
	a := h.b.auth
	u, ok := a.users[user]
	if !ok || !a.pass.check(u, []byte(password)) {
		return web.RoleNone, nil
	}
	switch u.Role {
	case RoleAdmin:
		return web.RoleAdmin, nil
	case RoleReporter:
		return web.RoleViewer, a.acc[user].lists // nil: every list, as over MQTT
	}
	return web.RoleNone, nil
}

// Ban publishes a ban as `vallum ban` does, after the checks every ban
// passes at the keeper and the bridges.
func (h *webHub) Ban(user, list string, p netip.Prefix, ttl time.Duration, reason string) error {
	if !slices.Contains(h.b.roots, list) {
		return fmt.Errorf("no list %q on this hub", list)
	}
	if err := h.guard.Check(p); err != nil {
		return fmt.Errorf("refusing to ban %s: %w", wire.FormatPrefix(p), err)
	}
	st := wire.State{At: time.Now(), Reason: reason, Origin: "web:" + user}
	event := wire.FormatPrefix(p) + " timeout 0"
	if ttl > 0 {
		st.Expires = st.At.Add(ttl)
		event = wire.FormatPrefix(p) + " timeout " + strconv.FormatInt(int64(wire.ClampTimeout(ttl)), 10)
	}
	return h.publish(wire.StateTopic(list, p), wire.EncodeState(st), wire.EventTopic(list, wire.KindAdd), event)
}

// Unban deletes the ban's state, then sends the del event.
func (h *webHub) Unban(user, list string, p netip.Prefix) error {
	if !slices.Contains(h.b.roots, list) {
		return fmt.Errorf("no list %q on this hub", list)
	}
	return h.publish(wire.StateTopic(list, p), nil, wire.EventTopic(list, wire.KindDel), wire.FormatPrefix(p))
}

func (h *webHub) publish(stateTopic string, state []byte, eventTopic, event string) error {
	if err := h.b.srv.Publish(stateTopic, state, true, 1); err != nil {
		return err
	}
	return h.b.srv.Publish(eventTopic, []byte(event), false, 1)
}

// Allow adds p to the fleet's shared allowlist, as `vallum allow add`
// does: the retained entry vallum/allow/PREFIX; every host then keeps p
// out of its sets.
func (h *webHub) Allow(user string, p netip.Prefix, comment string) error {
	if err := guard.New(nil, h.guard.Widest4, h.guard.Widest6).Check(p); errors.Is(err, guard.ErrTooBroad) {
		return fmt.Errorf("refusing to allow %s: %w", wire.FormatPrefix(p), err)
	}
	a := wire.Allow{At: time.Now(), Comment: comment, Origin: "web:" + user}
	return h.b.srv.Publish(wire.AllowTopic(p), wire.EncodeAllow(a), true, 1)
}

// CanAllow: the page shows the allow button.
func (h *webHub) CanAllow() bool { return true }
