package keeper

import (
	"net/netip"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// Replayed is one message of a journal an adapter kept of what a broker
// acknowledged before the keeper could make it safe (broker/journal.go):
// the bursts, and the unbans that came after them.
type Replayed struct {
	Topic   string
	Payload []byte
	At      time.Time // when the broker took it
	// Seen: the keeper took it live in this run (it came after the
	// broker started): only its unbans count, against older bursts.
	Seen bool
}

// Replay takes again, after Settle, the bans of the bursts in msgs (in the
// order the broker took them) that no cut on the broker holds: a broker
// killed between a burst's acknowledgement and its cut lost them. A ban
// is taken again as its burst made it (its time, its expiry; no
// escalation, which the burst counted already) unless a later message of
// msgs lifted it (a del event, a deletion of its state, an allowlist entry
// that covers it), it expired, the view holds it or a later state of it,
// or the keeper refuses it now. It returns how many it took; the next cut
// holds them.
func (k *Keeper) Replay(msgs []Replayed) int {
	lifted, allows := k.liftedIn(msgs)
	now := k.now()
	var out []retain
	n := 0
	k.mu.Lock()
	for j, m := range msgs {
		i, what := k.route(m.Topic)
		if m.Seen || what != onEvent {
			continue
		}
		t, err := wire.ParseTopic(k.lists[i].root, m.Topic)
		lines, _ := wire.ParsePayload(m.Payload)
		if err != nil || t.Kind == wire.KindDel || len(lines) < k.o.BurstLines || len(m.Payload) > k.o.Limits.MaxPayload {
			continue // not a burst: the keeper made its state before the broker went on
		}
		meta, _ := wire.ParseMeta(m.Payload)
		if meta.Origin == Origin {
			meta = wire.Meta{}
		}
		held := k.lists[i].ch.burst
		for _, l := range lines {
			topic := wire.StateTopic(k.lists[i].root, l.Prefix)
			if lifted[topic] > j || coveredAfter(allows, l.Prefix, j) || k.guard.Check(l.Prefix) != nil {
				continue
			}
			if r, ok := k.replayLocked(i, topic, l, meta, m.At, now); ok {
				out = append(out, r...)
				n++
			}
		}
		if k.lists[i].ch.burst > held {
			k.lists[i].ch.bursts++
		}
	}
	k.mu.Unlock()
	if n > 0 {
		k.log.Info("bans of bursts taken again from the journal", "bans", n)
		k.woken()
	}
	_ = k.publish(out)
	return n
}

// replayLocked takes one ban of a burst made at at again, unless it
// expired or the view holds it, or a later state of it.
func (k *Keeper) replayLocked(i int, topic string, l wire.Line, meta wire.Meta, at, now time.Time) ([]retain, bool) {
	st := stateFor(at, l.Timeout, nil)
	st.Reason = meta.Reason
	if meta.Origin != "" {
		st.Origin = meta.Origin
	}
	if !st.Expires.IsZero() && !st.Expires.After(now) {
		return nil, false
	}
	if e, ok := k.bans[topic]; ok && e.at >= st.At.UnixMilli() {
		return nil, false
	}
	if k.burstableLocked(i) {
		k.burstLocked(i, topic, st, now)
		return nil, true
	}
	k.trackLocked(i, topic, st)
	return []retain{k.sentLocked(topic, wire.EncodeState(st))}, true
}

// allowedAt is an allowlist entry set by the j-th message of a journal.
type allowedAt struct {
	p netip.Prefix
	j int
}

// liftedIn returns, for each state topic that msgs unban (a del event's
// line, a deleted state), the index of the last message that does, and
// the allowlist entries msgs set.
func (k *Keeper) liftedIn(msgs []Replayed) (map[string]int, []allowedAt) {
	lifted := map[string]int{}
	var allows []allowedAt
	for j, m := range msgs {
		i, what := k.route(m.Topic)
		switch what {
		case onAllow:
			if p, err := wire.ParseAllowTopic(m.Topic); err == nil && len(m.Payload) > 0 {
				allows = append(allows, allowedAt{p, j})
			}
		case onState:
			if t, err := wire.ParseTopic(k.lists[i].root, m.Topic); err == nil && len(m.Payload) == 0 {
				lifted[wire.StateTopic(k.lists[i].root, t.Prefix)] = j
			}
		case onEvent:
			t, err := wire.ParseTopic(k.lists[i].root, m.Topic)
			if err != nil || t.Kind != wire.KindDel {
				continue
			}
			lines, _ := wire.ParsePayload(m.Payload)
			for _, l := range lines {
				lifted[wire.StateTopic(k.lists[i].root, l.Prefix)] = j
			}
		}
	}
	return lifted, allows
}

// coveredAfter reports whether an allowlist entry set after the j-th
// message covers p.
func coveredAfter(allows []allowedAt, p netip.Prefix, j int) bool {
	for _, a := range allows {
		if a.j > j && a.p.Overlaps(p) {
			return true
		}
	}
	return false
}
