//go:build !(vallum_small && (mips || mipsle))

package keeper

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vallum/vallum/internal/policy"
	"github.com/vallum/vallum/internal/store"
	"github.com/vallum/vallum/internal/wire"
)

// polState is the keeper's policy state, under Keeper.mu.
type polState struct {
	lists   []policy.List // by list index
	hist    map[string]policy.History
	histCap int // len(hist) that makes the next ban sweep it
	kv      *store.KV
	pending map[string]*pendingSet // state topic -> reports short of a quorum
	buckets map[reporterKey]policy.Bucket
	held    map[reporterKey]int64
	sweepAt time.Time // when the next pending report leaves its window
	later   []laterState
}

// laterState is an escalated state published at Run's next turn (within
// a second), not at once: see escalateStateLocked.
type laterState struct {
	topic string
	at    int64 // the state's At, Unix ms: still the one tracked?
	st    wire.State
}

type reporterKey struct {
	list int
	by   string
}

type pendingSet struct {
	list    int
	prefix  netip.Prefix
	reports []policy.Report
}

const copyHist = "hist/"

// openPolicy takes the policy of each list kept and loads the history.
func (k *Keeper) openPolicy() error {
	p := &k.pol
	p.hist, p.histCap = map[string]policy.History{}, 4096
	p.pending, p.buckets, p.held = map[string]*pendingSet{}, map[reporterKey]policy.Bucket{}, map[reporterKey]int64{}
	for _, l := range k.lists {
		p.lists = append(p.lists, k.o.Policy.Lists[l.root])
	}
	for root := range k.o.Policy.Lists {
		if !k.keeps(root) {
			return fmt.Errorf("keeper: a policy for list %q, which it does not keep (it keeps %s)", root, strings.Join(k.o.Roots, ", "))
		}
	}
	if k.o.Policy.History == "" {
		return nil
	}
	kv, err := store.Open(k.o.Policy.History, store.Options{Logger: k.log})
	if err != nil {
		return fmt.Errorf("keeper: open the escalation history: %w", err)
	}
	p.kv = kv
	now := k.now()
	var old []string
	err = kv.Scan(copyHist, func(key string, val []byte) error {
		topic := strings.TrimPrefix(key, copyHist)
		h, ok := decodeHist(val)
		i, what := k.route(topic)
		if !ok || what != onState || p.lists[i].Escalate.Forgotten(h, now) {
			old = append(old, key)
		} else {
			p.hist[topic] = h
		}
		return nil
	})
	for _, key := range old { // Scan holds the store: delete after it
		_ = kv.Delete(key)
	}
	k.log.Info("escalation history loaded", "file", k.o.Policy.History, "addresses", len(p.hist), "forgotten", len(old))
	return err
}

func (k *Keeper) keeps(root string) bool { return k.named(root) != nil }

func (k *Keeper) closePolicy() error {
	if k.pol.kv == nil {
		return nil
	}
	return k.pol.kv.Close()
}

func encodeHist(h policy.History) []byte {
	return []byte(strconv.Itoa(h.Count) + " " + strconv.FormatInt(h.Last.Unix(), 10))
}

func decodeHist(b []byte) (policy.History, bool) {
	c, l, _ := strings.Cut(string(b), " ")
	n, err1 := strconv.Atoi(c)
	s, err2 := strconv.ParseInt(l, 10, 64)
	return policy.History{Count: n, Last: time.Unix(s, 0)}, err1 == nil && err2 == nil && n > 0
}

// escalateLocked counts a ban of topic on list i, asked for asked (0:
// permanent; DefaultTimeout: no floor), and returns the history to
// remember and the timeout it earns. Without escalation: asked, and nil.
func (k *Keeper) escalateLocked(i int, topic string, asked wire.Timeout, now time.Time) (*policy.History, wire.Timeout) {
	e := k.pol.lists[i].Escalate
	if e == nil {
		return nil, asked
	}
	floor := asked
	if floor == wire.DefaultTimeout {
		floor = 1 // no time asked: the history's alone
	}
	h, t := e.Ban(k.pol.hist[topic], now, floor)
	return &h, t
}

// rememberLocked keeps the history of topic, in the file too.
func (k *Keeper) rememberLocked(topic string, h *policy.History) {
	if h == nil {
		return
	}
	p := &k.pol
	if len(p.hist) >= p.histCap {
		now := k.now()
		for t, old := range p.hist {
			if i, what := k.route(t); what != onState || p.lists[i].Escalate.Forgotten(old, now) {
				delete(p.hist, t)
				p.del(copyHist + t)
			}
		}
		p.histCap = max(4096, 2*len(p.hist))
	}
	p.hist[topic] = *h
	if p.kv != nil {
		if err := p.kv.Set(copyHist+topic, encodeHist(*h)); err != nil {
			k.quiet.error("history", "keeper: escalation history write failed; a restart may forget an address's bans", "err", err)
		}
	}
}

func (p *polState) del(key string) {
	if p.kv != nil {
		_ = p.kv.Delete(key)
	}
}

// escalateStateLocked escalates a ban another client published as state
// (`vallum ban`, the fail2ban action): the client's ban time is the floor.
// It tracks the keeper's longer state and has Run publish it at its next
// turn: the hub's keeper sees a message before mochi fans it out, and
// bridges apply states in the order they come, so a state published at
// once would reach them before the client's and be undone by it. Nothing
// on a list without escalation, or for a state escalation already made (a
// count: this keeper's, or another keeper's of the list).
func (k *Keeper) escalateStateLocked(i int, topic string, s wire.State) []retain {
	if k.pol.lists[i].Escalate == nil || s.Count > 0 || s.Origin == Origin {
		return nil
	}
	asked := wire.Timeout(0)
	if !s.Expires.IsZero() {
		asked = max(1, wire.ClampTimeout(s.Expires.Sub(s.At)))
	}
	now := k.now()
	h, t := k.escalateLocked(i, topic, asked, now)
	at := now
	if !at.After(s.At) { // later than the client's, which it replaces
		at = s.At.Add(time.Millisecond)
	}
	ns := stateFor(at, t, h)
	ns.Reason, ns.Origin = s.Reason, s.Origin
	k.rememberLocked(topic, h)
	k.trackLocked(i, topic, ns)
	k.pol.later = append(k.pol.later, laterState{topic, ns.At.UnixMilli(), ns})
	return nil
}

// laterLocked returns the escalated states to publish now: those still
// tracked (not lifted or superseded meanwhile).
func (k *Keeper) laterLocked() []retain {
	var out []retain
	for _, l := range k.pol.later {
		if e, ok := k.bans[l.topic]; ok && e.at == l.at {
			out = append(out, k.sentLocked(l.topic, wire.EncodeState(l.st)))
		}
	}
	k.pol.later = k.pol.later[:0]
	return out
}

// report takes a report of reporter `by` on list i: each line is counted
// against the reporter's limit, then made a ban at once (no quorum) or
// kept pending until the quorum is reached.
func (k *Keeper) report(i int, by string, payload []byte) {
	root := k.lists[i].root
	if len(payload) > k.o.Limits.MaxPayload {
		k.quiet.warn("payload_too_large", "report refused whole: over the payload limit",
			"list", root, "reporter", by, "bytes", len(payload), "limit", k.o.Limits.MaxPayload)
		return
	}
	lines, _ := wire.ParsePayload(payload)
	now := k.now()
	var out []retain
	k.mu.Lock()
	for _, l := range lines {
		if err := k.guard.Check(l.Prefix); err != nil {
			k.quiet.warn("refused_event", "reported prefix not made state: the bridges refuse it", "prefix", l.Prefix, "reporter", by, "err", err)
			continue
		}
		if !k.takeLocked(i, by, l.Prefix, now) {
			continue
		}
		out = append(out, k.reportLineLocked(i, by, l, now)...)
	}
	k.mu.Unlock()
	k.publish(out)
}

// takeLocked counts one report against its reporter's limit, and logs and
// counts it when it is held.
func (k *Keeper) takeLocked(i int, by string, p netip.Prefix, now time.Time) bool {
	lim := k.pol.lists[i].Limit.OrDefault()
	key := reporterKey{i, by}
	b, ok := lim.Take(k.pol.buckets[key], now)
	k.pol.buckets[key] = b
	if !ok {
		k.pol.held[key]++
		k.quiet.error("reports_held", "reporter over its limit: report held, not applied",
			"list", k.lists[i].root, "reporter", by, "prefix", p, "limit", strconv.Itoa(lim.N)+"/"+lim.Per.String(), "held", k.pol.held[key])
	}
	return ok
}

// reportLineLocked makes one report a ban, or keeps it pending.
func (k *Keeper) reportLineLocked(i int, by string, l wire.Line, now time.Time) []retain {
	root := k.lists[i].root
	topic := wire.StateTopic(root, l.Prefix)
	q := k.pol.lists[i].Quorum
	asked := l.Timeout
	if asked == wire.DefaultTimeout {
		asked = 0 // what an event without timeout means: the set's default, permanent
	}
	ps := k.pol.pending[topic]
	if ps == nil {
		ps = &pendingSet{list: i, prefix: l.Prefix}
	}
	kept, reached, asked := q.Add(ps.reports, policy.Report{By: by, At: now, Timeout: asked})
	if !reached {
		ps.reports = kept
		k.pol.pending[topic] = ps
		k.schedulePendingLocked(q.Ends(kept))
		return []retain{k.pendingRetain(root, ps)}
	}
	var out []retain
	if _, was := k.pol.pending[topic]; was {
		delete(k.pol.pending, topic)
		out = append(out, retain{wire.PendingTopic(root, l.Prefix), nil})
	}
	if l.Timeout == wire.DefaultTimeout && len(kept) == 1 {
		asked = wire.DefaultTimeout // one report without a time: the history's alone
	}
	h, t := k.escalateLocked(i, topic, asked, now)
	st := stateFor(now, t, h)
	st.Reason = reportReason(q, kept)
	k.rememberLocked(topic, h)
	k.trackLocked(i, topic, st)
	k.log.Info("reports made a ban", "list", root, "prefix", l.Prefix, "reason", st.Reason, "timeout", t)
	return append(out, k.sentLocked(topic, wire.EncodeState(st)))
}

// reportReason says who made a ban: the reporters, by name.
func reportReason(q policy.Quorum, r []policy.Report) string {
	names := make([]string, len(r))
	for i, x := range r {
		names[i] = x.By
	}
	sort.Strings(names)
	if !q.On() {
		return "report: " + names[0]
	}
	return "quorum: " + strings.Join(names, " ")
}

// pendingRetain is the retained message of a pending set. The keeper does
// not read its own back live (Message ignores the topic), so it is sent
// without the echo bookkeeping.
func (k *Keeper) pendingRetain(root string, ps *pendingSet) retain {
	p := wire.Pending{Need: k.pol.lists[ps.list].Quorum.N}
	for _, r := range ps.reports {
		p.Reports = append(p.Reports, wire.PendingReport{By: r.By, At: r.At, Timeout: r.Timeout})
	}
	return retain{wire.PendingTopic(root, ps.prefix), wire.EncodePending(p)}
}

func (k *Keeper) schedulePendingLocked(at time.Time) {
	if k.pol.sweepAt.IsZero() || at.Before(k.pol.sweepAt) {
		k.pol.sweepAt = at
	}
}

// sweepPendingLocked drops the reports that left their window by now and
// publishes what is left of each set they were in. Run calls it every
// second at most; it looks at the sets only when one is due.
func (k *Keeper) sweepPendingLocked(now time.Time) []retain {
	p := &k.pol
	if p.sweepAt.IsZero() || now.Before(p.sweepAt) {
		return k.laterLocked()
	}
	p.sweepAt = time.Time{}
	var out []retain
	for topic, ps := range p.pending {
		q := p.lists[ps.list].Quorum
		kept := q.Live(ps.reports, now)
		root := k.lists[ps.list].root
		switch {
		case len(kept) == 0:
			delete(p.pending, topic)
			out = append(out, retain{wire.PendingTopic(root, ps.prefix), nil})
			continue
		case len(kept) < len(ps.reports):
			ps.reports = kept
			out = append(out, k.pendingRetain(root, ps))
		}
		k.schedulePendingLocked(q.Ends(kept))
	}
	out = append(out, k.laterLocked()...)
	for key, b := range p.buckets { // a bucket refilled is a bucket never used
		if lim := p.lists[key.list].Limit.OrDefault(); now.Sub(b.At) > lim.Per {
			delete(p.buckets, key)
		}
	}
	return out
}

// readPending takes back, at start, the reports a keeper left pending on
// the broker, so that a restart does not lose a quorum's evidence. Those
// of a list without a quorum now are cleared at Settle's next sweep.
func (k *Keeper) readPending(i int, topic string, payload []byte) {
	root := k.lists[i].root
	pfx, err := wire.ParsePrefix(strings.TrimPrefix(topic, wire.PendingPrefix+root+"/"))
	if err != nil || len(payload) == 0 {
		return // another list's under this root, or a deletion
	}
	pd, err := wire.DecodePending(payload)
	k.mu.Lock()
	defer k.mu.Unlock()
	ps := &pendingSet{list: i, prefix: pfx}
	if err == nil {
		for _, r := range pd.Reports {
			ps.reports = append(ps.reports, policy.Report{By: r.By, At: r.At, Timeout: r.Timeout})
		}
	}
	// Kept even when empty or broken: the sweep clears what has no report.
	k.pol.pending[wire.StateTopic(root, pfx)] = ps
	k.pol.sweepAt = k.now()
}

// Held returns how many reports each reporter had held, by list.
func (k *Keeper) Held() []Held {
	k.mu.Lock()
	defer k.mu.Unlock()
	var h []Held
	for key, n := range k.pol.held {
		h = append(h, Held{List: k.lists[key.list].root, Reporter: key.by, Reports: n})
	}
	sort.Slice(h, func(a, b int) bool {
		return h[a].List < h[b].List || h[a].List == h[b].List && h[a].Reporter < h[b].Reporter
	})
	return h
}
