package broker

import (
	"context"
	"log/slog"
	"sort"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/vallum/vallum/internal/keeper"
	"github.com/vallum/vallum/internal/wire"
)

// hubKeeper runs the list keeper (internal/keeper) inside the broker:
// mochi's inline subscriptions feed it every message of its lists, and it
// publishes through the inline client, which the ACL lets write anywhere.
// Its copy of the lists is the broker's own store: no other is kept.
type hubKeeper struct {
	srv   *mqtt.Server
	k     *keeper.Keeper
	roots []string
	log   *slog.Logger
	jnl   *journal // the burst journal (journal.go); nil without a store
	// tap, when set, sees every message the keeper reads, after it: the
	// web view's index (web.go). live is false for the retained messages
	// loaded at start.
	tap func(topic string, payload []byte, live bool)
}

func newHubKeeper(srv *mqtt.Server, roots []string, o Options, log *slog.Logger, j *journal) (*hubKeeper, error) {
	h := &hubKeeper{srv: srv, roots: roots, log: log, jnl: j}
	ko := keeper.Options{Roots: roots, Name: "hub", Limits: o.Keeper, Policy: o.Policy,
		LegacyState: o.LegacyState, LegacyAuto: o.LegacyAuto, Logger: log}
	if j != nil {
		ko.Flushed = j.flushed
	}
	k, err := keeper.New(ko, h)
	if err != nil {
		return nil, err
	}
	h.k = k
	if j != nil {
		j.k = k
	}
	return h, nil
}

// Retain publishes for the keeper. Inline subscriptions see the message in
// this goroutine, the keeper's own included: it knows its echoes.
func (h *hubKeeper) Retain(topic string, payload []byte) error {
	return h.srv.Publish(topic, payload, true, 1)
}

// RetainedPayload hands the keeper what mochi retains on topic, so that
// it holds no second copy of its chunks (keeper.RetainedReader). mochi
// replaces a retained packet whole, never its payload in place.
func (h *hubKeeper) RetainedPayload(topic string) ([]byte, bool) {
	pk, ok := h.srv.Topics.Retained.Get(topic)
	return pk.Payload, ok && len(pk.Payload) > 0
}

// subscribe registers the keeper's inline subscriptions, and the hook
// that gives it the shared allowlist earlier (keeperHook). Inline
// subscriptions see every message in the publisher's own goroutine, which
// is fine: the keeper never blocks on the network.
func (h *hubKeeper) subscribe() error {
	for i, f := range h.k.Filters() {
		if f == wire.AllowFilter {
			continue // keeperHook
		}
		err := h.srv.Subscribe(f, i+1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			h.take(pk)
		})
		if err != nil {
			return err
		}
	}
	return h.srv.AddHook(&keeperHook{hk: h}, nil)
}

// take gives the keeper one message, and the web view's index after it.
func (h *hubKeeper) take(pk packets.Packet) {
	h.k.Message(pk.TopicName, pk.Payload)
	if webBuilt && h.tap != nil {
		h.tap(pk.TopicName, pk.Payload, true)
	}
}

// keeperHook gives the keeper each change of the shared allowlist once
// mochi holds it, before mochi acknowledges it (OnRetainMessage), in the
// publisher's goroutine. Through an inline subscription it came after the
// PUBACK (mochi v2.7.9 processPublish), so an allow entry deleted, then a
// ban of its address imported by another process, could reach the keeper
// in the other order: the ban was refused as allowlisted
// (TestImportSharedAllowlist, 1 run in 10). Only the allowlist: the
// keeper's answers to bans and events must reach the hosts after what
// they answer (an escalated state after the event it escalates), as the
// inline subscriptions deliver them.
type keeperHook struct {
	mqtt.HookBase
	hk *hubKeeper
}

func (*keeperHook) ID() string { return "vallum-keeper" }

func (*keeperHook) Provides(b byte) bool { return b == mqtt.OnRetainMessage }

func (h *keeperHook) OnRetainMessage(_ *mqtt.Client, pk packets.Packet, _ int64) {
	if strings.HasPrefix(pk.TopicName, wire.AllowPrefix) {
		h.hk.take(pk)
	}
}

// load gives the keeper the retained messages the store loaded before the
// inline subscriptions could see them, then lets it settle: decide each
// list's epoch and publish its record.
func (h *hubKeeper) load() {
	n := 0
	for _, f := range h.k.Filters() {
		for _, pk := range h.srv.Topics.Messages(f) {
			h.k.Retained(pk.TopicName, pk.Payload)
			if webBuilt && h.tap != nil {
				h.tap(pk.TopicName, pk.Payload, false)
			}
			n++
		}
	}
	if err := h.k.Settle(); err != nil {
		h.log.Error("keeper could not publish its record", "err", err)
	}
	if h.jnl != nil {
		h.jnl.replay() // the bursts a killed hub had not cut yet
	}
	h.log.Info("keeper started", "lists", h.roots, "retained", n)
}

func (h *hubKeeper) run(ctx context.Context) { _ = h.k.Run(ctx) }

// keeperRoots are the lists the hub keeps: those it serves (Options.Lists)
// and those the users file gives its hosts and reporters.
func keeperRoots(lists []string, users map[string]User) []string {
	seen := map[string]bool{}
	var roots []string
	add := func(r string) {
		if !seen[r] {
			seen[r] = true
			roots = append(roots, r)
		}
	}
	for _, r := range lists {
		add(r)
	}
	for _, u := range users {
		if u.Role == RoleHost || u.Role == RoleReporter {
			for _, r := range u.Lists {
				add(r)
			}
		}
	}
	sort.Strings(roots) // users come in map order
	return roots
}
