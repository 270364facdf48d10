package keeper

import (
	"time"

	"github.com/vallum/vallum/internal/policy"
	"github.com/vallum/vallum/internal/wire"
)

// sameWithin is how far apart two expiry times may be and still say the
// same: `vallum ban` publishes state and then the legacy event, and the
// keeper's clock reads the event a moment later, so the event is skipped.
const sameWithin = 2 // seconds

// event turns one event message into state. What every bridge refuses
// never becomes state: a message over the payload limit (refused whole, as
// the bridges do), a prefix too broad or covering an allowlisted address.
// The bans of a message of many lines (burst.go) go straight to the next
// cut, without a per-ban state each.
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
	meta, _ := wire.ParseMeta(payload)
	if meta.Origin == Origin {
		meta = wire.Meta{} // the keeper's own mark is not a client's to give
	}
	now := k.now()
	var out []retain
	k.mu.Lock()
	burst := t.Kind != wire.KindDel && len(lines) >= k.o.BurstLines && k.burstableLocked(i)
	held := k.lists[i].ch.burst
	for _, l := range lines {
		if t.Kind != wire.KindDel {
			if err := k.guard.Check(l.Prefix); err != nil {
				k.quiet.warn("refused_event", "event line not made state: the bridges refuse it", "prefix", l.Prefix, "err", err)
				continue
			}
		}
		if r, ok := k.applyLocked(i, t.Kind, l, meta, burst, now); ok {
			out = append(out, r)
		}
	}
	if k.lists[i].ch.burst > held {
		k.lists[i].ch.bursts++ // a message a cut must hold (Bursts)
	}
	k.mu.Unlock()
	if burst {
		k.woken()
	}
	k.publish(out)
}

// applyLocked records one event line as state, unless the state already
// says so or a client stated the prefix a moment ago (statedFor). With
// burst, the ban waits for the next cut (burst.go): nothing to publish.
func (k *Keeper) applyLocked(i int, kind wire.Kind, l wire.Line, meta wire.Meta, burst bool, now time.Time) (retain, bool) {
	topic := wire.StateTopic(k.lists[i].root, l.Prefix)
	if at, ok := k.stated[topic]; ok && now.Sub(at) < statedFor {
		return retain{}, false
	}
	var h *policy.History // the escalation's, when it applies (policy.go)
	t := l.Timeout
	if kind != wire.KindDel {
		h, t = k.escalateLocked(i, topic, l.Timeout, now)
	}
	st := stateFor(now, t, h)
	if meta.Origin != "" {
		st.Origin = meta.Origin
	}
	st.Reason = meta.Reason
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
	k.rememberLocked(topic, h)
	if burst {
		k.burstLocked(i, topic, st, now)
		return retain{}, false
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
