//go:build linux

package nft

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/vallum/vallum/bridge"
)

// phase holds ops that touch distinct prefixes, so they commute: all its
// deletes go first, then all its adds. The k-th op on one prefix goes to
// phase k, which keeps the order of the ops on each prefix (add then del
// ends deleted) while a batch of distinct prefixes is one phase, a few
// large messages.
type phase struct {
	destroy, create, keep []int // keep: adds with Keep, sent exclusive
}

// plan turns the ops still to do into the messages of one transaction.
func (b *Backend) plan(st []opState) []message {
	var phases []phase
	seen := map[netip.Prefix]int{}
	for i := range st {
		s := &st[i]
		if s.err != nil || s.done {
			continue
		}
		k := seen[s.op.Prefix]
		seen[s.op.Prefix] = k + 1
		if k == len(phases) {
			phases = append(phases, phase{})
		}
		keep := s.op.Action == bridge.Add && s.op.Keep
		if !s.skipDestroy && !keep {
			phases[k].destroy = append(phases[k].destroy, i)
		}
		switch {
		case keep:
			phases[k].keep = append(phases[k].keep, i)
		case s.op.Action == bridge.Add:
			phases[k].create = append(phases[k].create, i)
		}
	}
	del := uint16(msgDestroySetElem)
	if b.noDestroy {
		del = unix.NFT_MSG_DELSETELEM
	}
	var msgs []message
	for _, p := range phases {
		msgs = chunk(msgs, st, del, p.destroy, false)
		msgs = chunk(msgs, st, unix.NFT_MSG_NEWSETELEM, p.create, false)
		msgs = chunk(msgs, st, unix.NFT_MSG_NEWSETELEM, p.keep, true)
	}
	return msgs
}

// chunk appends messages of kind for the ops idx, one run per set, each
// message at most as long as its ops' chunk size; excl makes the kernel
// refuse an element that exists instead of leaving it.
func chunk(msgs []message, st []opState, kind uint16, idx []int, excl bool) []message {
	var sets []*nftables.Set
	for _, i := range idx {
		if !slices.Contains(sets, st[i].set) {
			sets = append(sets, st[i].set)
		}
	}
	for _, set := range sets {
		var cur *message
		for _, i := range idx {
			s := &st[i]
			if s.set != set {
				continue
			}
			if cur == nil || len(cur.ops) >= st[cur.ops[0]].chunk || s.chunk != st[cur.ops[0]].chunk {
				msgs = append(msgs, message{kind: kind, set: set, excl: excl})
				cur = &msgs[len(msgs)-1]
			}
			cur.ops = append(cur.ops, i)
			cur.elems = append(cur.elems, elems(set, s.op, kind == unix.NFT_MSG_NEWSETELEM)...)
		}
	}
	return msgs
}
