package keeper

import "time"

// pub is what the keeper published on one topic lately. An adapter over
// an MQTT client cannot tell the keeper's own messages from others' (the
// broker sends them back like any other), so the keeper remembers the
// payloads it has in flight and recognises them when they come back.
type pub struct {
	sums []uint64  // payloads published and not back yet, in order
	at   time.Time // when the last one was published
	// doubt: another's state or deletion came since, and the keeper
	// kept its own view (doubtLocked).
	doubt bool
}

// pubsKeep is how long a publish is remembered: its echo comes back in
// milliseconds, and a lost one (the session ended) must not be awaited
// for ever.
const pubsKeep = time.Minute

// sum is the 64-bit FNV-1a hash of payload (hash/fnv costs the router
// builds more than these lines).
func sum(payload []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range payload {
		h = (h ^ uint64(b)) * 1099511628211
	}
	return h
}

// sentLocked notes that the keeper publishes payload on topic now and
// returns the message to publish.
func (k *Keeper) sentLocked(topic string, payload []byte) retain {
	now := k.now()
	p := k.pubs[topic]
	if p == nil {
		k.sweepPubsLocked(now)
		p = &pub{}
		k.pubs[topic] = p
	}
	p.sums = append(p.sums, sum(payload))
	p.at, p.doubt = now, false
	return retain{topic, payload}
}

// copiedLocked notes that the keeper publishes payload on topic again:
// a copy of what the broker lost or held before (cleanedLocked,
// clobberedLocked, the revived copies), no decision on the ban's events,
// so it makes the keeper doubt no other keeper's (recentLocked). Its echo
// is recognised, so that no deletion that comes before it is taken for
// one of the keeper's own publishes after it (echoLocked).
func (k *Keeper) copiedLocked(topic string, payload []byte) retain {
	p := k.pubs[topic]
	if p == nil {
		k.sweepPubsLocked(k.now())
		p = &pub{} // no at: not recent
		k.pubs[topic] = p
	}
	p.sums = append(p.sums, sum(payload))
	return retain{topic, payload}
}

// echoLocked reports whether payload on topic is the keeper's own publish
// coming back. A publish whose echo never came (a lost session) is
// skipped by a later one's, but a deletion must be the first in flight:
// its payload is everyone's, and one that comes before the echo of an
// earlier publish of the keeper's reached the broker before the keeper's
// deletion. Taken for it, by a keeper that read far behind its broker,
// the real echo then passed for a client's unban, and the keeper's
// deletion of an old event stayed on the broker over the last ban
// (TestTwoKeepersRandom, seed 13523).
func (k *Keeper) echoLocked(topic string, payload []byte) bool {
	p := k.pubs[topic]
	if p == nil || len(p.sums) == 0 {
		return false
	}
	s := sum(payload)
	for i, x := range p.sums {
		if x == s {
			p.sums = p.sums[i+1:]
			return true
		}
		if len(payload) == 0 {
			return false
		}
	}
	return false
}

// lostLocked forgets the publishes in flight: a new read of the retained
// messages begins, after a lost session, and their echoes may never come.
func (k *Keeper) lostLocked() {
	for _, p := range k.pubs {
		p.sums = nil
	}
}

// recentLocked reports whether the keeper published on topic within
// statedFor, or has a publish on it in flight. Two keepers of a list turn
// the same events into state, each at its own pace, and the broker
// interleaves their publishes: the other keeper's state or deletion that
// comes then may be of an earlier event than the one this keeper decided
// on last, and the events decide anyway. Taken for a client's, it would
// undo this keeper's later decision, or its deletion, taken for an unban,
// would make this keeper skip the next event (statedFor): each seen with
// two keepers and 10,000 events.
func (k *Keeper) recentLocked(topic string) bool {
	p := k.pubs[topic]
	if p == nil {
		return false
	}
	age := k.now().Sub(p.at)
	return age < statedFor || len(p.sums) > 0 && age < pubsKeep
}

// doubtLocked reports whether the broker may hold on topic other than
// what the keeper tracks: a state or deletion that recentLocked let pass
// came since the keeper's last publish there. The next event is then
// published even if the keeper's view already says so.
func (k *Keeper) doubtLocked(topic string) bool {
	p := k.pubs[topic]
	return p != nil && p.doubt
}

// expiringLocked reports whether the state the keeper holds on topic
// expires about now: a deletion then is another keeper's expiry.
func (k *Keeper) expiringLocked(topic string, now time.Time) bool {
	e, ok := k.bans[topic]
	return ok && e.exp != 0 && now.Unix() >= e.exp-sameWithin
}

// sweepPubsLocked forgets old publishes once the map doubled since the
// last sweep, so that a burst costs amortised constant time per publish.
// A doubt is kept for pubsKeep: for the next event of a quiet topic.
func (k *Keeper) sweepPubsLocked(now time.Time) {
	if len(k.pubs) < k.pubsCap {
		return
	}
	k.sweepLocked(now)
}

// sweepLocked forgets the publishes and the client states older than they
// count, into new maps: a Go map keeps its size after deletions, and a
// burst of 100,000 bans would hold its 15 MB for good. Run calls it every
// pubsKeep too, for a burst that no publish follows.
func (k *Keeper) sweepLocked(now time.Time) {
	pubs := make(map[string]*pub, len(k.pubs)/4)
	for t, p := range k.pubs {
		if age := now.Sub(p.at); age <= pubsKeep && (len(p.sums) > 0 || p.doubt || age <= statedFor) {
			pubs[t] = p
		}
	}
	k.pubs = pubs
	k.pubsCap = max(4096, 2*len(k.pubs))
	stated := make(map[string]time.Time, len(k.stated)/4)
	for t, at := range k.stated {
		if now.Sub(at) <= statedFor {
			stated[t] = at
		}
	}
	k.stated = stated
	k.statCap = max(1024, 2*len(k.stated))
	touched := make(map[string]time.Time, len(k.touched)/4)
	for t, at := range k.touched {
		if now.Sub(at) <= statedFor {
			touched[t] = at
		}
	}
	k.touched = touched
}
