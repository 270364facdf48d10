package broker

import (
	"container/heap"
	"context"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/wire"
)

// sameWithin is how far apart two expiry times may be and still say the
// same: `vallum ban` publishes state and then the legacy event, and the
// keeper's clock reads the event a moment later, so the event is skipped.
const sameWithin = 2 // seconds

// keeper records the legacy events of its lists as retained state and
// clears expired state. It tracks every retained state of its lists,
// including what the store loaded at startup, with the expiry times in a
// heap, so clearing costs nothing per idle second whatever the list size.
type keeper struct {
	srv   *mqtt.Server
	log   *slog.Logger
	roots []string
	now   func() time.Time

	mu      sync.Mutex
	expires map[string]int64     // state topic -> Unix seconds; 0: permanent
	stated  map[string]time.Time // state topic -> when a client last published it
	due     expiryHeap
	wake    chan struct{}
}

func newKeeper(srv *mqtt.Server, roots []string, log *slog.Logger) *keeper {
	return &keeper{
		srv: srv, log: log, roots: roots, now: time.Now,
		expires: map[string]int64{},
		stated:  map[string]time.Time{},
		wake:    make(chan struct{}, 1),
	}
}

// subscribe registers the keeper's inline subscriptions. Inline
// subscriptions are QoS 0 and see every message in the publisher's own
// goroutine, which is fine: the keeper never blocks on the network.
func (k *keeper) subscribe() error {
	id := 1
	for _, root := range k.roots {
		root := root
		for _, f := range wire.EventTopics(root) {
			if err := k.srv.Subscribe(f, id, k.onEvent(root)); err != nil {
				return err
			}
			id++
		}
		if err := k.srv.Subscribe(wire.StateFilter(root), id, k.onState(root)); err != nil {
			return err
		}
		id++
	}
	return nil
}

// load tracks the retained states the store loaded before the inline
// subscriptions could see them.
func (k *keeper) load() {
	n := 0
	for _, root := range k.roots {
		for _, pk := range k.srv.Topics.Messages(wire.StateFilter(root)) {
			k.track(root, pk)
			n++
		}
	}
	k.log.Info("keeper started", "lists", len(k.roots), "states", n)
}

func (k *keeper) onState(root string) mqtt.InlineSubFn {
	return func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		// Origin is the publisher: the keeper's own states (from events,
		// or clearing an expired one) do not count.
		if pk.Origin != mqtt.InlineClientId {
			k.noteStated(pk.TopicName)
		}
		k.track(root, pk)
	}
}

// statedFor is how long events of a prefix are not turned into state after
// a client published its state (`vallum ban` and `vallum unban` send the
// state, then the event). mochi acknowledges a publish before it fans it
// out, so an event can reach the keeper after the state of the next
// command: the add of a `vallum ban` after the `vallum unban` that
// followed it banned the address again, and the del of an unban after the
// next ban lifted it (each seen in 1 to 2 of 100 runs under load). The
// state is what counts; the bridges follow the same rule (bridge/decode.go).
const statedFor = 10 * time.Second

func (k *keeper) noteStated(topic string) {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.stated) >= 1024 {
		for t, at := range k.stated {
			if now.Sub(at) > statedFor {
				delete(k.stated, t)
			}
		}
	}
	k.stated[topic] = now
}

func (k *keeper) track(root string, pk packets.Packet) {
	if _, err := wire.ParseTopic(root, pk.TopicName); err != nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(pk.Payload) == 0 {
		delete(k.expires, pk.TopicName)
		return
	}
	s, err := wire.DecodeState(pk.Payload)
	if err != nil {
		k.log.Debug("ignored state", "topic", pk.TopicName, "err", err)
		return
	}
	k.setLocked(pk.TopicName, unixOrZero(s.Expires))
}

func (k *keeper) onEvent(root string) mqtt.InlineSubFn {
	return func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		t, err := wire.ParseTopic(root, pk.TopicName)
		if err != nil {
			return
		}
		lines, _ := wire.ParsePayload(pk.Payload) // bridges log refused lines
		now := k.now()
		for _, l := range lines {
			// What every bridge refuses (0.0.0.0/0, loopback, ...) is
			// never made state either; each bridge applies its own,
			// stricter allowlist on top.
			if t.Kind != wire.KindDel && builtinGuard.Check(l.Prefix) != nil {
				continue
			}
			k.apply(root, t.Kind, l, now)
		}
	}
}

// builtinGuard holds the limits every bridge applies whatever its settings.
var builtinGuard = guard.New(nil, 0, 0)

// apply records one event line as state, unless the state already says so.
func (k *keeper) apply(root string, kind wire.Kind, l wire.Line, now time.Time) {
	topic := wire.StateTopic(root, l.Prefix)
	st := wire.State{At: now, Origin: "keeper"}
	if l.Timeout > 0 {
		st.Expires = now.Add(time.Duration(l.Timeout) * time.Second)
	}
	exp := unixOrZero(st.Expires)

	k.mu.Lock()
	if at, ok := k.stated[topic]; ok && now.Sub(at) < statedFor {
		k.mu.Unlock()
		return
	}
	old, known := k.expires[topic]
	switch {
	case kind == wire.KindDel && !known, kind != wire.KindDel && known && same(old, exp):
		k.mu.Unlock()
		return
	case kind == wire.KindDel:
		delete(k.expires, topic)
	default:
		k.setLocked(topic, exp)
	}
	k.mu.Unlock()

	payload := []byte(nil) // an empty retained message deletes the state
	if kind != wire.KindDel {
		payload = wire.EncodeState(st)
	}
	k.publish(topic, payload)
}

func (k *keeper) publish(topic string, payload []byte) {
	// Inline publishes bypass the ACL, as the keeper must.
	if err := k.srv.Publish(topic, payload, true, 1); err != nil {
		k.log.Error("keeper publish failed", "topic", topic, "err", err)
	}
}

// setLocked records topic's expiry and schedules it. k.mu is held.
func (k *keeper) setLocked(topic string, exp int64) {
	if old, ok := k.expires[topic]; ok && old == exp {
		return // our own publish coming back, or a repeat
	}
	k.expires[topic] = exp
	if exp == 0 {
		return
	}
	if len(k.due) > 2*len(k.expires)+1024 {
		k.compactLocked()
	}
	heap.Push(&k.due, expiry{at: exp, topic: topic})
	if k.due[0].topic == topic {
		select { // the earliest deadline moved: wake run
		case k.wake <- struct{}{}:
		default:
		}
	}
}

// compactLocked drops heap entries superseded by a later state.
func (k *keeper) compactLocked() {
	live := k.due[:0]
	for _, e := range k.due {
		if k.expires[e.topic] == e.at {
			live = append(live, e)
		}
	}
	k.due = live
	heap.Init(&k.due)
}

// run clears expired states until ctx is done.
func (k *keeper) run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		t.Reset(k.nextWait())
		select {
		case <-ctx.Done():
			return
		case <-k.wake:
		case <-t.C:
			for _, topic := range k.expired(k.now().Unix()) {
				k.log.Debug("ban expired", "topic", topic)
				k.publish(topic, nil)
			}
		}
	}
}

func (k *keeper) nextWait() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.due) == 0 {
		return time.Hour
	}
	return time.Until(time.Unix(k.due[0].at, 0))
}

// expired removes and returns the topics whose state ended by now.
func (k *keeper) expired(now int64) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for len(k.due) > 0 && k.due[0].at <= now {
		e := heap.Pop(&k.due).(expiry)
		if k.expires[e.topic] == e.at { // else superseded or deleted
			delete(k.expires, e.topic)
			out = append(out, e.topic)
		}
	}
	return out
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func same(a, b int64) bool {
	if a == 0 || b == 0 {
		return a == b
	}
	d := a - b
	return d >= -sameWithin && d <= sameWithin
}

type expiry struct {
	at    int64
	topic string
}

type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
