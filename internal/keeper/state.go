package keeper

import (
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// statedFor is how long events of a prefix are not turned into state after
// a client published its state (`vallum ban` and `vallum unban` send the
// state, then the event). A broker may acknowledge a publish before it
// fans it out (mochi does), so an event can reach the keeper after the
// state of the next command: the add of a `vallum ban` after the `vallum
// unban` that followed it banned the address again, and the del of an
// unban after the next ban lifted it (each seen in 1 to 2 of 100 runs under
// load). The state is what counts; the bridges follow the same rule
// (bridge/decode.go).
const statedFor = 10 * time.Second

// fix is a state read before Settle that the keeper rewrites once it has
// read them all: one under a misspelt topic, or one it refuses.
type fix struct {
	list  int
	topic string
	canon string // the canonical topic; "" to clear topic only
	state wire.State
}

// parsed is a state message as the keeper reads it.
type parsed struct {
	canon string // the canonical topic of its prefix
	state wire.State
	del   bool // an empty payload
	ok    bool // a state topic of the list with a payload that decodes
}

func (k *Keeper) parse(i int, topic string, payload []byte) (parsed, error) {
	t, err := wire.ParseTopic(k.lists[i].root, topic)
	if err != nil || t.Kind != wire.KindState {
		return parsed{}, err
	}
	p := parsed{canon: wire.StateTopic(k.lists[i].root, t.Prefix), del: len(payload) == 0}
	if !p.del {
		if p.state, err = wire.DecodeState(payload); err != nil {
			return parsed{}, err
		}
		if err := k.guard.Check(t.Prefix); err != nil {
			k.quiet.warn("refused_state", "state refused, clearing it: the bridges refuse it", "topic", wire.Clip(topic), "err", err)
			p.canon = ""
		}
	}
	p.ok = true
	return p, nil
}

// state takes a state message: read before Settle (live false) or live.
// A misspelt or refused state read before Settle waits for it: the
// canonical topic's state may come later in the read.
func (k *Keeper) state(i int, topic string, payload []byte, live bool) {
	p, err := k.parse(i, topic, payload)
	if !p.ok {
		k.log.Debug("ignored state", "topic", wire.Clip(topic), "err", err)
		return
	}
	var out []retain
	k.mu.Lock()
	k.brokerStateLocked(i, topic, p) // what the manifest announces (deltas.go)
	var again bool
	if live && p.canon == topic {
		out, again = k.revivedLocked(topic, p) // cut.go
	}
	switch {
	case again: // a copy of the keeper's that landed over later messages
		k.echoLocked(topic, payload)
	case !live && p.canon != topic:
		k.fixes = append(k.fixes, fix{list: i, topic: topic, canon: p.canon, state: p.state})
	case !live:
		k.trackLocked(i, topic, p.state)
	case !k.echoLocked(topic, payload):
		out = k.foreignLocked(i, topic, p)
	case p.del:
		out = k.clobberedLocked(topic)
	}
	k.mu.Unlock()
	k.publish(out)
}

// clobberedLocked takes the keeper's own deletion of topic coming back
// while its view holds a state of the ban that came before it: the broker
// took that state first, then the deletion (a keeper that lagged behind a
// client decided on an older event), and holds nothing. With chunks, the
// next cut would take the view's ban, but no host would have it until
// then: the keeper publishes the state again, unless a publish of its own
// is on the way.
func (k *Keeper) clobberedLocked(topic string) []retain {
	e, ok := k.bans[topic]
	if p := k.pubs[topic]; !ok || e.flags&fState == 0 || p != nil && len(p.sums) > 0 {
		return nil
	}
	return []retain{k.copiedLocked(topic, wire.EncodeState(k.stateOf(e)))}
}

// foreignLocked applies a state another client published.
func (k *Keeper) foreignLocked(i int, topic string, p parsed) []retain {
	// By anyone: no cleanup races it (cleanLocked). Not the echo of the
	// keeper's own cleanup: after a cut of a million, a map of a million
	// for a minute (until sweepLocked).
	cleanup := p.del && p.canon == topic && k.cleanBackLocked(i, topic)
	if p.canon == topic && !cleanup {
		k.touched[topic] = k.now()
	}
	switch {
	case cleanup:
		return k.cleanedLocked(topic)
	case p.canon == "":
		k.dropLocked(topic)
		return []retain{k.sentLocked(topic, nil)}
	case p.canon != topic && p.del:
		return nil // nothing is kept there: the keeper cleared it or will
	case p.canon != topic:
		k.notedLocked(p.canon, p)
		return k.respellLocked(fix{list: i, topic: topic, canon: p.canon, state: p.state})
	case (p.del || p.state.Origin == Origin) && k.recentLocked(topic):
		// Another keeper's decision on an event this keeper decided on
		// too: it may be of an earlier event than this keeper's latest.
		k.pubs[topic].doubt = true
		if e, ok := k.bans[topic]; ok && p.del {
			// The view keeps the ban, but the broker no longer holds
			// its state: a cut leaves it out (cutLocked).
			e.flags &^= fState
			k.bans[topic] = e
		}
		return nil
	case p.del:
		k.notedLocked(topic, p)
		return k.stateGoneLocked(i, topic)
	default:
		k.notedLocked(topic, p)
		k.trackLocked(i, topic, p.state)
		return k.escalateStateLocked(i, topic, p.state) // policy.go
	}
}

// respellLocked moves a state to its canonical topic, unless a later state
// is there already, and clears the misspelt one: one topic per ban, so that
// one unban lifts it.
func (k *Keeper) respellLocked(f fix) []retain {
	var out []retain
	if f.canon != "" {
		if e, ok := k.bans[f.canon]; !ok || e.at < f.state.At.UnixMilli() {
			k.trackLocked(f.list, f.canon, f.state)
			out = append(out, k.sentLocked(f.canon, wire.EncodeState(f.state)))
		}
		k.quiet.warn("respelt", "state under a non-canonical topic moved to its canonical one", "topic", wire.Clip(f.topic), "canonical", f.canon)
	}
	return append(out, k.sentLocked(f.topic, nil))
}

// notedLocked notes that a client published the state of topic, unless
// it is another keeper's (see statedFor): a state of Origin, or a deletion
// of a state that expires now.
func (k *Keeper) notedLocked(topic string, p parsed) {
	now := k.now()
	if !p.del && p.state.Origin == Origin || p.del && k.expiringLocked(topic, now) {
		return
	}
	if len(k.stated) >= k.statCap {
		for t, at := range k.stated {
			if now.Sub(at) > statedFor {
				delete(k.stated, t)
			}
		}
		k.statCap = max(1024, 2*len(k.stated))
	}
	k.stated[topic] = now
}

// stateGoneLocked takes a client's deletion of topic's state: an unban,
// unless it is another keeper's after its cut (its chunks hold the ban
// now): a follower (not the list's cutter) keeps a ban the chunks hold as
// its view does (if the deletion is an unban, the cutter's rewrite of the
// chunk says so), and any keeper keeps a ban older than another keeper's
// cut that has just come. The
// cutter publishes the state again of a ban its own chunks do not hold.
func (k *Keeper) stateGoneLocked(i int, topic string) []retain {
	l := k.lists[i]
	e, ok := k.bans[topic]
	t, _ := wire.ParseTopic(l.root, topic)
	moved := chunksBuilt && ok && (!k.cutter(l) && k.inChunksLocked(i, topic, e.at) || l.ch.movedLocked(t.Prefix, e.at, k.now()))
	switch {
	case !moved:
		k.unbanLocked(i, topic)
	case k.cutter(l) && e.flags&fChunk == 0:
		e.flags |= fState
		k.bans[topic] = e
		return []retain{k.sentLocked(topic, wire.EncodeState(k.stateOf(e)))}
	default:
		e.flags &^= fState
		k.bans[topic] = e
	}
	return nil
}

// unbanLocked forgets the ban of topic, and rewrites the chunk holding it.
func (k *Keeper) unbanLocked(i int, topic string) {
	if e, ok := k.bans[topic]; ok {
		k.dropLocked(topic)
		k.unbannedLocked(i, topic, e)
	}
}

// trackLocked records the state the broker holds on topic, in the copy too.
func (k *Keeper) trackLocked(i int, topic string, s wire.State) {
	e := k.entryLocked(i, s)
	e.flags = fState
	old, known := k.bans[topic]
	e.flags |= old.flags & fChunk // the chunk still holds the prefix
	k.bans[topic] = e
	if known && old.at == e.at && old.exp == e.exp {
		return // the same state read again, or our own coming back
	}
	k.lists[i].ch.changes++
	if k.copy != nil { // the hub has none: no JSON per ban for nothing
		k.copy.set(copyBan+topic, wire.EncodeState(s))
	}
	if e.exp != 0 && (!known || old.exp != e.exp) {
		k.scheduleLocked(topic, e.exp)
	}
}

// dropLocked forgets the state of topic.
func (k *Keeper) dropLocked(topic string) {
	if _, ok := k.bans[topic]; ok {
		delete(k.bans, topic)
		k.copy.del(copyBan + topic)
	}
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
