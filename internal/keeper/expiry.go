package keeper

import (
	"container/heap"
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
		t.Reset(k.nextWait())
		select {
		case <-ctx.Done():
			return nil
		case <-k.wake:
		case <-t.C:
			k.expire()
		}
	}
}

// expire clears the states that ended by now.
func (k *Keeper) expire() {
	now := k.now().Unix()
	var out []retain
	k.mu.Lock()
	for len(k.due) > 0 && k.due[0].at <= now {
		e := heap.Pop(&k.due).(expiry)
		if b, ok := k.bans[e.topic]; ok && b.exp == e.at { // else superseded or deleted
			k.dropLocked(e.topic)
			out = append(out, k.sentLocked(e.topic, nil, 0))
			k.log.Debug("ban expired", "topic", e.topic)
		}
	}
	k.mu.Unlock()
	k.publish(out)
}

func (k *Keeper) nextWait() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.due) == 0 {
		return maxWait
	}
	return min(maxWait, max(0, time.Unix(k.due[0].at, 0).Sub(k.now())))
}

// scheduleLocked puts topic's expiry in the heap.
func (k *Keeper) scheduleLocked(topic string, exp int64) {
	if len(k.due) > 2*len(k.bans)+1024 {
		k.compactLocked()
	}
	heap.Push(&k.due, expiry{at: exp, topic: topic})
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
	heap.Init(&k.due)
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
