package ipset

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/vallum/vallum/bridge"
)

// maxMsgBytes bounds one netlink message: the entries of a batch are nested
// in one IPSET_ATTR_ADT attribute, whose length is 16 bits (libipset's
// restore is bounded the same way). At about 40 bytes per IPv4 entry with a
// timeout, that is some 1,600 entries per message.
const maxMsgBytes = 65535

// refused is an op the kernel (or the pre-check) refused, with its index
// in the batch so that the ApplyError lists refusals in batch order.
type refused struct {
	at int
	bridge.OpError
}

// Apply applies ops in order to the named set, in as few netlink messages
// as it can: consecutive ops of one action (and Keep) go out together, as many as fit
// in one message. Ops the set cannot take (wrong family; a prefix for a
// hash:ip set) are refused before sending, because the kernel answers them
// with a generic protocol error. When the kernel refuses an entry in the
// middle of a message (a full set), it stops there; Apply records the
// refusal and sends the rest again.
func (b *Backend) Apply(ctx context.Context, set string, ops []bridge.Op) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, err := b.lookup(set, ops)
	if err != nil {
		return err
	}
	var failed []refused
	run := make([]bridge.Op, 0, min(len(ops), b.maxBatch))
	idx := make([]int, 0, cap(run)) // idx[i] is run[i]'s index in ops
	flush := func() error {
		err := b.send(ctx, h, run, idx, &failed)
		run, idx = run[:0], idx[:0]
		return err
	}
	for i, op := range ops {
		if err := precheck(h, op); err != nil {
			failed = append(failed, refused{i, bridge.OpError{Op: op, Err: err}})
			continue
		}
		if len(run) > 0 && (run[0].Action != op.Action || run[0].Keep != op.Keep) {
			if err := flush(); err != nil {
				return err
			}
		}
		run, idx = append(run, op), append(idx, i)
	}
	if err := flush(); err != nil {
		return err
	}
	if len(failed) == 0 {
		return nil
	}
	sort.SliceStable(failed, func(i, j int) bool { return failed[i].at < failed[j].at })
	ae := &bridge.ApplyError{Set: set, Failed: make([]bridge.OpError, len(failed))}
	for i, f := range failed {
		ae.Failed[i] = f.OpError
	}
	return ae
}

// lookup returns the header of set from the cache, unless it is not there
// or would refuse one of ops: then the set may have been recreated since,
// and it reads the header again.
func (b *Backend) lookup(set string, ops []bridge.Op) (header, error) {
	if h, ok := b.sets[set]; ok && !slices.ContainsFunc(ops, func(op bridge.Op) bool { return precheck(h, op) != nil }) {
		return h, nil
	}
	h, err := b.header(set)
	if err != nil {
		return h, err
	}
	b.remember(h)
	return h, nil
}

// precheck refuses what the kernel would refuse without saying why.
func precheck(h header, op bridge.Op) error {
	if f := bridge.FamilyOf(op.Prefix); f != familyOf(h.family) {
		return fmt.Errorf("%s prefix into %s set: %w", f, familyOf(h.family), bridge.ErrFamily)
	}
	if op.Action != bridge.Add && op.Action != bridge.Del {
		return fmt.Errorf("unknown %s: %w", op.Action, bridge.ErrSetType)
	}
	if h.typ == "hash:ip" && !op.Prefix.IsSingleIP() {
		return fmt.Errorf("prefix /%d in a hash:ip set: %w", op.Prefix.Bits(), bridge.ErrSetType)
	}
	return nil
}

// send applies run, ops of one action, in messages of at most b.maxBatch
// entries. After the kernel refuses an entry it halves the message size,
// so that a set that refuses everything (full) costs small messages, not
// the same large one echoed back again and again; each success doubles it.
func (b *Backend) send(ctx context.Context, h header, run []bridge.Op, idx []int, failed *[]refused) error {
	size := b.maxBatch
	for len(run) > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ipset %q: %w", h.name, err)
		}
		req, n := b.m.encodeADT(h, run[0].Action, run[:min(size, len(run))])
		err := b.c.exec(req, nil)
		if err == nil {
			run, idx = run[n:], idx[n:]
			size = min(2*size, b.maxBatch)
			continue
		}
		var ke *kernelError
		if !errors.As(err, &ke) || ke.Line == 0 || int(ke.Line) > n {
			return b.setErr(h.name, err)
		}
		at := int(ke.Line) - 1 // entries before it were applied
		op, opAt, opErr := run[at], idx[at], b.entryErr(ke)
		run, idx = run[at+1:], idx[at+1:]
		if staleHeader(ke.Code) {
			h, opErr = b.reread(h, op, opErr)
			run, idx = prune(h, run, idx, failed)
		}
		*failed = append(*failed, refused{opAt, bridge.OpError{Op: op, Err: opErr}})
		size = max(1, size/2)
	}
	return nil
}

// reread reads the set's header again after the kernel refused op in a way
// that says the set is not what the cache holds (recreated with another
// family, or without comment support). When the set as it is now explains
// the refusal, that is the reason given, not the kernel's generic one.
func (b *Backend) reread(h header, op bridge.Op, kernelErr error) (header, error) {
	nh, err := b.header(h.name)
	if err != nil {
		delete(b.sets, h.name)
		return h, kernelErr
	}
	b.remember(nh)
	if perr := precheck(nh, op); perr != nil {
		return nh, perr
	}
	return nh, kernelErr
}

// prune refuses the ops of run that the set h cannot take, keeping order.
func prune(h header, run []bridge.Op, idx []int, failed *[]refused) ([]bridge.Op, []int) {
	keep, keepIdx := run[:0:0], idx[:0:0]
	for i, op := range run {
		if err := precheck(h, op); err != nil {
			*failed = append(*failed, refused{idx[i], bridge.OpError{Op: op, Err: err}})
			continue
		}
		keep, keepIdx = append(keep, op), append(keepIdx, idx[i])
	}
	return keep, keepIdx
}

// staleHeader reports kernel refusals that mean the set is not what its
// cached header says (another family, no timeout or comment support).
func staleHeader(code int) bool {
	switch code {
	case errProtocol, errTimeout, errComment, errIPAddrIPv4, errIPAddrIPv6:
		return true
	}
	return false
}

// entryErr maps the kernel's refusal of one entry to the bridge's errors.
func (b *Backend) entryErr(ke *kernelError) error {
	switch ke.Code {
	case errTypeSpecific: // IPSET_ERR_HASH_FULL: vallum only uses hash sets
		return bridge.ErrSetFull
	case errIPAddrIPv4, errIPAddrIPv6:
		return bridge.ErrFamily
	case errInvalidCIDR:
		return bridge.ErrSetType
	case errExist: // an add with Keep of an entry the set holds
		return bridge.ErrExists
	}
	return b.kernelErr(ke)
}
