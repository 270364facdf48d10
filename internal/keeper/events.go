package keeper

import (
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// sameWithin is how far apart two expiry times may be and still say the
// same: `vallum ban` publishes state and then the legacy event, and the
// keeper's clock reads the event a moment later, so the event is skipped.
const sameWithin = 2 // seconds

// event turns one event message into state. What every bridge refuses
// never becomes state: a message over the payload limit (refused whole, as
// the bridges do), a prefix too broad or covering an allowlisted address.
func (k *Keeper) event(i int, topic string, payload []byte) {
	root := k.lists[i].root
	if len(payload) > k.o.Limits.MaxPayload {
		k.quiet.warn("payload_too_large", "event refused whole: over the payload limit",
			"topic", wire.Clip(topic), "bytes", len(payload), "limit", k.o.Limits.MaxPayload)
		return
	}
	t, err := wire.ParseTopic(root, topic)
	if err != nil {
		return
	}
	lines, _ := wire.ParsePayload(payload) // the bridges log refused lines
	now := k.now()
	var out []retain
	k.mu.Lock()
	for _, l := range lines {
		if t.Kind != wire.KindDel {
			if err := k.guard.Check(l.Prefix); err != nil {
				k.quiet.warn("refused_event", "event line not made state: the bridges refuse it", "prefix", l.Prefix, "err", err)
				continue
			}
		}
		if r, ok := k.applyLocked(i, t.Kind, l, now); ok {
			out = append(out, r)
		}
	}
	k.mu.Unlock()
	k.publish(out)
}

// applyLocked records one event line as state, unless the state already
// says so or a client stated the prefix a moment ago (statedFor).
func (k *Keeper) applyLocked(i int, kind wire.Kind, l wire.Line, now time.Time) (retain, bool) {
	topic := wire.StateTopic(k.lists[i].root, l.Prefix)
	if at, ok := k.stated[topic]; ok && now.Sub(at) < statedFor {
		return retain{}, false
	}
	st := wire.State{At: now, Origin: Origin}
	if l.Timeout > 0 {
		st.Expires = now.Add(time.Duration(l.Timeout) * time.Second)
	}
	exp := unixOrZero(st.Expires)
	old, known := k.bans[topic]
	// In doubt, what the event says is published whatever the view says.
	if !k.doubtLocked(topic) && (kind == wire.KindDel && !known || kind != wire.KindDel && known && same(old.exp, exp)) {
		return retain{}, false
	}
	if kind == wire.KindDel {
		k.unbanLocked(i, topic)
		return k.sentLocked(topic, nil), true
	}
	k.trackLocked(i, topic, st)
	return k.sentLocked(topic, wire.EncodeState(st)), true
}

func same(a, b int64) bool {
	if a == 0 || b == 0 {
		return a == b
	}
	d := a - b
	return d >= -sameWithin && d <= sameWithin
}
