package keeper

import (
	"context"
	"time"
)

// maxWait bounds Run's sleep: the wall clock can step (a suspend, NTP),
// and a look at the heap's top costs nothing.
const maxWait = time.Second

// Run expires bans until ctx is done. The expiry times are in a heap, so
// an idle second costs nothing whatever the list size.
func (k *Keeper) Run(ctx context.Context) error {
	t := time.NewTimer(maxWait)
	defer t.Stop()
	for {
		k.expire()
		next := k.maintain() // cuts and chunk rewrites due
		wait := k.nextWait()
		if !next.IsZero() {
			wait = min(wait, max(0, next.Sub(k.now())))
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-k.wake:
		case <-t.C:
		}
	}
}

// expire clears the states that ended by now.
func (k *Keeper) expire() {
	now := k.now().Unix()
	var out []retain
	k.mu.Lock()
	for len(k.due) > 0 && k.due[0].at <= now {
		e := k.due.pop()
		if b, ok := k.bans[e.topic]; ok && b.exp == e.at { // else superseded or deleted
			k.dropLocked(e.topic)
			k.lists[b.list].ch.changes++
			if b.flags&fState != 0 { // a chunk needs no rewrite: readers drop what expired
				out = append(out, k.sentLocked(e.topic, nil))
			}
		}
	}
	k.mu.Unlock()
	k.publish(out)
}

func (k *Keeper) nextWait() time.Duration {
	wait := maxWait
	k.mu.Lock()
	if len(k.due) > 0 {
		wait = min(wait, max(0, time.Unix(k.due[0].at, 0).Sub(k.now())))
	}
	k.mu.Unlock()
	return wait
}

// scheduleLocked puts topic's expiry in the heap.
func (k *Keeper) scheduleLocked(topic string, exp int64) {
	if len(k.due) > 2*len(k.bans)+1024 {
		k.compactLocked()
	}
	k.due.push(expiry{at: exp, topic: topic})
	if k.due[0].topic == topic {
		select { // the earliest deadline moved: wake Run
		case k.wake <- struct{}{}:
		default:
		}
	}
}

// compactLocked drops heap entries superseded by a later state.
func (k *Keeper) compactLocked() {
	live := k.due[:0]
	for _, e := range k.due {
		if b, ok := k.bans[e.topic]; ok && b.exp == e.at {
			live = append(live, e)
		}
	}
	k.due = live
	for i := len(live)/2 - 1; i >= 0; i-- {
		k.due.down(i)
	}
}

type expiry struct {
	at    int64
	topic string
}

// expiryHeap is a min-heap on at. Not container/heap: its interface boxes
// every expiry (an allocation a ban) and costs the router builds a
// kilobyte more than these lines.
type expiryHeap []expiry

func (h *expiryHeap) push(e expiry) {
	*h = append(*h, e)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if q[p].at <= q[i].at {
			break
		}
		q[p], q[i] = q[i], q[p]
		i = p
	}
}

func (h *expiryHeap) pop() expiry {
	q := *h
	top, n := q[0], len(q)-1
	q[0], q[n] = q[n], expiry{}
	*h = q[:n]
	h.down(0)
	return top
}

// down moves the i-th entry down to its place.
func (h *expiryHeap) down(i int) {
	q := *h
	for {
		c := 2*i + 1
		if c >= len(q) {
			return
		}
		if c+1 < len(q) && q[c+1].at < q[c].at {
			c++
		}
		if q[i].at <= q[c].at {
			return
		}
		q[i], q[c] = q[c], q[i]
		i = c
	}
}
