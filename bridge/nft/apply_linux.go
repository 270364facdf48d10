//go:build linux

package nft

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/vallum/vallum/bridge"
)

// ErrOverlap reports a prefix that the kernel refused because it overlaps
// an interval already in the set (nft_rbtree refuses overlaps; the nft
// command merges them in user space, which would change the other entry).
var ErrOverlap = errors.New("prefix overlaps an entry of the interval set")

// maxChunk is the most ops one netlink message carries.
const maxChunk = 1024

// opState is one op of an Apply as it goes through the retries.
type opState struct {
	op          bridge.Op
	set         *nftables.Set
	err         error // refused: left out of the batch
	done        bool  // nothing left to do (a delete of an absent element)
	skipDestroy bool  // the element is absent: add without deleting first
	chunk       int   // most ops per message; halved around a refusal
}

// Apply applies ops to set in one transaction; see the package comment.
func (b *Backend) Apply(ctx context.Context, set string, ops []bridge.Op) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, err := b.resolve(set)
	if err != nil {
		return err
	}
	st := make([]opState, len(ops))
	for i, op := range ops {
		st[i] = opState{op: op, chunk: maxChunk}
		st[i].set, st[i].err = t.check(op)
	}
	for {
		if err := ctxErr(ctx); err != nil {
			return err
		}
		msgs := b.plan(st)
		failed, err := b.transact(ctx, msgs)
		if err != nil {
			return fmt.Errorf("nft apply to %q: %w", set, err)
		}
		if len(failed) == 0 {
			break
		}
		for i, ferr := range failed {
			b.narrow(st, msgs[i], ferr)
		}
	}
	return refusals(set, st)
}

// check picks the set an op goes to, or says why none can take it.
func (t *target) check(op bridge.Op) (*nftables.Set, error) {
	if f := bridge.FamilyOf(op.Prefix); f != t.family {
		return nil, fmt.Errorf("nft set %q holds %s addresses: %w", t.name, t.family, bridge.ErrFamily)
	}
	s := t.setFor(op.Prefix)
	if s == nil {
		return nil, fmt.Errorf("nft set %q has no interval flag for a prefix: %w", t.name, bridge.ErrSetType)
	}
	return s, nil
}

// narrow learns from one refused message: a message of several ops is
// split in halves for the next try; a message of one op pins the refusal.
func (b *Backend) narrow(st []opState, m message, err error) {
	if m.kind == msgDestroySetElem && errors.Is(err, unix.EINVAL) && !b.noDestroy {
		// nfnetlink answers a message type it does not know with EINVAL.
		b.log.Info("kernel lacks destroy element (Linux < 6.3), using delete")
		b.noDestroy = true
		return
	}
	if len(m.ops) > 1 {
		for _, i := range m.ops {
			st[i].chunk = (len(m.ops) + 1) / 2
		}
		return
	}
	s := &st[m.ops[0]]
	switch {
	case m.kind != unix.NFT_MSG_NEWSETELEM && errors.Is(err, unix.ENOENT):
		// DELSETELEM (kernels before 6.3) of an absent element.
		s.skipDestroy = true
		s.done = s.op.Action == bridge.Del
	case m.excl && errors.Is(err, unix.EEXIST):
		s.err = b.existsOrOverlap(s)
	case errors.Is(err, unix.ENFILE):
		s.err = fmt.Errorf("nft set %q: %w", s.set.Name, bridge.ErrSetFull)
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTEMPTY):
		s.err = fmt.Errorf("nft set %q: %w", s.set.Name, ErrOverlap)
	default:
		s.err = fmt.Errorf("nft %s %s in %q: %w", s.op.Action, s.op.Prefix, s.set.Name, err)
	}
}

// existsOrOverlap tells apart the two refusals of an exclusive add. In a
// hash set the element is there. An interval set refuses a range that
// overlaps another with the same errno, so it is listed: interval sets hold
// a list's few prefixes, and list in linear time (unlike hash sets).
func (b *Backend) existsOrOverlap(s *opState) error {
	if s.set.Interval {
		entries, err := b.entries(s.set)
		if err == nil && !slices.ContainsFunc(entries, func(e bridge.Entry) bool { return e.Prefix == s.op.Prefix }) {
			return fmt.Errorf("nft set %q: %w", s.set.Name, ErrOverlap)
		}
	}
	return fmt.Errorf("nft set %q: %w", s.set.Name, bridge.ErrExists)
}

func refusals(set string, st []opState) error {
	var ae bridge.ApplyError
	for _, s := range st {
		if s.err != nil {
			ae.Failed = append(ae.Failed, bridge.OpError{Op: s.op, Err: s.err})
		}
	}
	if len(ae.Failed) == 0 {
		return nil
	}
	ae.Set = set
	return &ae
}

// elems returns the elements of prefix p in set s: the address itself, or
// for an interval set the range start and the end one past it (none when
// the range runs to the top of the address space, as nft does).
func elems(s *nftables.Set, op bridge.Op, withData bool) []elem {
	start := elem{key: op.Prefix.Masked().Addr().AsSlice(), timeout: -1}
	if withData && s.HasTimeout {
		switch {
		case op.Timeout > 0:
			start.timeout = int64(op.Timeout)
		case op.Timeout == 0 && s.Timeout > 0:
			// Permanent in a set with a default timeout: an explicit
			// timeout 0, as no attribute would mean the set's default.
			start.timeout = 0
		default:
			start.timeout = -1 // the set's default, none for ours
		}
	} else {
		start.timeout = -1
	}
	if withData {
		start.comment = op.Comment
	}
	if !s.Interval {
		return []elem{start}
	}
	last := lastOf(op.Prefix)
	if last == lastAddr(last) {
		return []elem{start}
	}
	return []elem{start, {key: last.Next().AsSlice(), end: true, timeout: -1}}
}
