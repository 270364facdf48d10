package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/vallum/vallum/internal/keeper"
	"github.com/vallum/vallum/internal/mochiclose"
)

// Broker is the embedded MQTT broker.
type Broker struct {
	srv    *mqtt.Server
	ls     []listeners.Listener
	roots  []string   // the lists the keeper keeps
	keeper *hubKeeper // nil without lists
	web    *webHub    // nil without Options.Web
	hosts  *hostIndex // nil in the router builds, or without the inline client
	auth   *authHook
	store  *storeHook // nil without a data dir
	opts   Options
	ref    *refusals
	guard  *connGuard
	joins  *joinFreer
}

// Stats are the broker's counters, for metrics.
type Stats struct {
	ClientsConnected int64
	MessagesReceived int64
	MessagesSent     int64
	MessagesDropped  int64 // to slow subscribers, or over the inflight limit
	Retained         int64
	Refused          map[string]int64 // refusals by reason (see refuse.go)
	ReportsHeld      []keeper.Held    // the keeper's reports held, by list and reporter
	KeeperBans       map[string]int64 // the keeper's live bans, by list; nil: no keeper
}

// New checks o, loads the users file, opens the store and binds every
// listener, so that every startup error surfaces here.
func New(o Options) (*Broker, error) {
	o.ensureDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	ref := newRefusals(o.Logger)
	auth, err := newAuth(o, ref)
	if err != nil {
		return nil, err
	}
	roots := keeperRoots(o.Lists, auth.users)
	srv := mqtt.New(&mqtt.Options{
		Capabilities: capabilities(o),
		Logger:       slog.New(&briefHandler{o.Logger.Handler()}),
		InlineClient: len(roots) > 0,
		// Room for bulk feeds: one 4 MiB message is read in a few calls.
		ClientNetReadBufferSize:  64 << 10,
		ClientNetWriteBufferSize: 64 << 10,
	})
	if err := stopRetainedSweep(srv); err != nil {
		return nil, err
	}
	auth.srv = srv
	b := &Broker{srv: srv, opts: o, roots: roots, ref: ref, guard: newConnGuard(o.Limits, ref), auth: auth}
	if err := srv.AddHook(auth, nil); err != nil {
		return nil, fmt.Errorf("add auth hook: %w", err)
	}
	b.joins = newJoinFreer()
	if err := srv.AddHook(b.joins, nil); err != nil {
		return nil, fmt.Errorf("add join hook: %w", err)
	}
	if err := b.addStore(); err != nil {
		return nil, err
	}
	if err := b.bind(); err != nil {
		_ = srv.Close() // closes the store and what was bound
		return nil, err
	}
	if webBuilt { // (the router builds have no web view: not even the calls)
		if err := b.startWeb(); err != nil {
			_ = srv.Close()
			return nil, err
		}
	}
	if webBuilt && (len(roots) > 0 || b.web != nil) { // with the inline client (the web view: an error without)
		if err := b.startHosts(); err != nil {
			_ = srv.Close()
			b.closeWeb()
			return nil, fmt.Errorf("subscribe to the hosts' statuses: %w", err)
		}
	}
	if err := b.startKeeper(); err != nil {
		_ = srv.Close()
		if webBuilt {
			b.closeWeb()
		}
		return nil, fmt.Errorf("start keeper: %w", err)
	}
	return b, nil
}

// startKeeper subscribes the keeper of every list the broker serves: the
// lists of Options.Lists and of the users file. Without any, no keeper
// runs, and the broker says so once.
func (b *Broker) startKeeper() error {
	if len(b.roots) == 0 {
		b.opts.Logger.Warn("no list named: no keeper runs, so legacy events become no state and expired bans stay; " +
			"name the lists with -t LIST, or with lists: of the hosts and reporters in the users file")
		return nil
	}
	var j *journal
	if b.store != nil {
		var err error
		if j, err = openJournal(b.store.kv, b.roots, b.opts.Logger.With("component", "journal")); err != nil {
			return err
		}
	}
	k, err := newHubKeeper(b.srv, b.roots, b.opts, b.opts.Logger.With("component", "keeper"), j)
	if err != nil {
		return err
	}
	b.keeper = k
	if j != nil {
		b.store.journal = j // before Serve: no publish yet
	}
	if webBuilt && b.web != nil {
		k.tap = b.web.Feed
	}
	return k.subscribe()
}

// capabilities replaces mochi's defaults, several of which are traps for a
// ban list: retained messages and queued QoS messages older than a day are
// deleted (MaximumMessageExpiryInterval, 86400 s), a client may have only
// 1024 QoS messages in flight towards the broker and 8192 from it, and a
// subscriber's queue holds 8192 messages.
func capabilities(o Options) *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	c.MaximumMessageExpiryInterval = 0 // never: a permanent ban must not vanish
	c.MaximumSessionExpiryInterval = uint32(min(o.SessionExpiry.Seconds(), math.MaxUint32))
	c.MaximumClients = int64(o.MaxClients)
	c.MaximumPacketSize = uint32(o.MaxMessageSize)
	c.MaximumInflight = uint16(o.MaxInflight)
	c.ReceiveMaximum = uint16(o.MaxInflight)
	c.MaximumClientWritesPending = int32(min(o.MaxQueued, math.MaxInt32))
	// QoS 2 is what vallumd's fail2ban action (mosquitto_pub -q 2) sends;
	// vallum's own subscriptions ask for QoS 1.
	c.MaximumQos = 2
	c.TopicAliasMaximum = uint16(o.Limits.MaxTopicAliases)
	return c
}

func (b *Broker) bind() error {
	var tc *tls.Config // loaded once, for the first tls listener
	for i, l := range b.opts.Listeners {
		if l.Kind == KindTLS && tc == nil {
			c, err := tlsConfig(b.opts.TLSCert, b.opts.TLSKey, b.opts.TLSClientCA)
			if err != nil {
				return err
			}
			tc = c
		}
		ml := &guarded{newListener(listenerID(l, i), l, tc, b.opts.WSHosts, b.ref), b.guard}
		if err := b.srv.AddListener(ml); err != nil {
			return fmt.Errorf("listen %s: %w", l, err)
		}
		b.ls = append(b.ls, ml)
	}
	return nil
}

// Run serves clients until ctx is done, then disconnects them and closes
// the listeners and the store. It returns nil on a clean shutdown.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.srv.Serve(); err != nil {
		_ = b.srv.Close()
		return fmt.Errorf("start broker: %w", err)
	}
	b.opts.Logger.Info("broker started", "listen", b.Addrs(), "persistent", b.opts.DataDir != "")
	kctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	if b.keeper != nil {
		b.keeper.load()
		go func() { defer close(done); b.keeper.run(kctx) }()
	} else {
		close(done)
	}
	if webBuilt && b.hosts != nil {
		b.loadHosts()
	}
	var served chan struct{}
	if webBuilt && b.web != nil {
		served = make(chan struct{})
		b.web.load()
		go func() { defer close(served); b.web.serve(kctx) }()
	}
	<-ctx.Done()
	stop()
	<-done
	if webBuilt && served != nil {
		<-served
	}
	err := mochiclose.Close(b.srv, mochiclose.Grace)
	b.opts.Logger.Info("broker stopped")
	return err
}

// Addrs returns the bound address of every listener, as scheme://host:port.
func (b *Broker) Addrs() []string {
	out := make([]string, len(b.ls))
	for i, l := range b.ls {
		out[i] = b.opts.Listeners[i].Kind + "://" + l.Address()
	}
	return out
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	in := b.srv.Info
	return Stats{
		ClientsConnected: atomic.LoadInt64(&in.ClientsConnected),
		MessagesReceived: atomic.LoadInt64(&in.MessagesReceived),
		MessagesSent:     atomic.LoadInt64(&in.MessagesSent),
		MessagesDropped:  atomic.LoadInt64(&in.MessagesDropped) + atomic.LoadInt64(&in.InflightDropped),
		Retained:         int64(b.srv.Topics.Retained.Len()),
		Refused:          b.ref.counts(),
		ReportsHeld:      b.keeperHeld(),
		KeeperBans:       b.keeperBans(),
	}
}

func (b *Broker) keeperBans() map[string]int64 {
	if b.keeper == nil {
		return nil
	}
	return b.keeper.k.Bans()
}

func (b *Broker) keeperHeld() []keeper.Held {
	if b.keeper == nil {
		return nil
	}
	return b.keeper.k.Held()
}

// newAuth builds the auth hook: users from the file, and what anonymous
// clients may do. Anonymous clients are trusted as admins only when every
// listener is on loopback, so that only local users reach the broker (as
// vallumd's `mosquitto_pub -h localhost` did); --allow-anonymous on a
// network address gives them host and reporter rights, never admin.
func newAuth(o Options, ref *refusals) (*authHook, error) {
	h := &authHook{pass: newPassCache(), lists: o.Lists, lim: o.Limits, ref: ref,
		ws: map[string]bool{}, owners: map[string]string{}}
	for i, l := range o.Listeners {
		if l.Kind == KindWS {
			h.ws[listenerID(l, i)] = true
		}
	}
	if o.UsersFile != "" || len(o.ExtraUsers) > 0 {
		users := map[string]User{}
		if o.UsersFile != "" {
			var err error
			if users, err = loadUsers(o.UsersFile); err != nil {
				return nil, err
			}
		}
		for _, u := range o.ExtraUsers {
			if err := checkUser(u); err != nil {
				return nil, fmt.Errorf("user %q: %w", u.Name, err)
			}
			if _, taken := users[u.Name]; taken {
				return nil, fmt.Errorf("%s: user %q: the name is reserved for vallum's own use; rename that user", o.UsersFile, u.Name)
			}
			users[u.Name] = u
		}
		h.users, h.acc = users, map[string]access{}
		for name, u := range users {
			a := roleAccess(u.Role, defaultLists(u.Lists, o.Lists))
			a.publish, a.subscribe, a.name = u.Publish, u.Subscribe, name
			h.acc[name] = a
		}
	}
	loop := o.loopbackOnly()
	switch {
	case o.UsersFile == "" && loop, o.AllowAnonymous && loop:
		h.anon = &access{admin: true}
	case o.AllowAnonymous:
		h.anon = &access{host: true, reporter: true, lists: defaultLists(nil, o.Lists)}
	}
	// Loopback trust is for local users, never for a web page in a local
	// browser: anonymous WebSocket clients are never admins.
	if o.AllowAnonymous {
		h.wsAnon = &access{host: true, reporter: true, lists: defaultLists(nil, o.Lists)}
	}
	switch {
	case o.UsersFile == "" && !loop && !o.AllowAnonymous:
		return nil, errors.New("refusing to accept anonymous clients on a network address: " +
			"give --users FILE (see `vallum broker hash-password`) or --allow-anonymous, or listen on 127.0.0.1 only")
	}
	return h, nil
}

// listenerID names the i-th listener for mochi.
func listenerID(l Listener, i int) string { return fmt.Sprintf("%s%d", l.Kind, i) }

func defaultLists(own, all []string) []string {
	if len(own) > 0 {
		return own
	}
	if len(all) > 0 {
		return all
	}
	return nil
}
