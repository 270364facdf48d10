// Package bridge turns MQTT ban-list messages into ordered, batched changes
// to kernel sets. It owns the ordered apply queue, the MQTT client, and
// reconciliation of the kernel sets to the list state kept on the broker;
// the topics and payloads it reads are internal/wire's, and every add
// passes internal/guard.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vallum/vallum/internal/wire"
)

// Action says whether an Op adds a prefix to a set or deletes it.
type Action uint8

// The actions of the wire contract: ROOT/add (and bare ROOT) and ROOT/del.
const (
	Add Action = iota + 1
	Del
)

func (a Action) String() string {
	switch a {
	case Add:
		return "add"
	case Del:
		return "del"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Kind is the event kind that carries a: KindAdd or KindDel.
func (a Action) Kind() wire.Kind {
	if a == Del {
		return wire.KindDel
	}
	return wire.KindAdd
}

// Op is one change to one kernel set. Prefix is always masked and, for
// IPv4, never v4-mapped: the parser normalises it at the edge.
type Op struct {
	Action  Action
	Prefix  netip.Prefix
	Timeout wire.Timeout // Add only
	// Comment is stored with the entry where the set supports it. vallum
	// uses it to tell its own entries from those a person added by hand,
	// so that reconciliation never removes the latter.
	Comment string
	// Keep (Add only) leaves an entry the set already holds as it is, and
	// refuses the op with ErrExists: the bridge asks it for prefixes that
	// are not its own, so that an entry a person added is never changed.
	Keep bool
	// Burst (an event's Add only) marks an add that came in a message of
	// many lines (a feed's import): the list's keeper cuts such bans into
	// its chunks only later, and a sync gives them longer (burstLag).
	// Backends ignore it.
	Burst bool
}

func (o Op) String() string {
	if o.Action == Add && o.Timeout >= 0 {
		return fmt.Sprintf("%s %s timeout %d", o.Action, o.Prefix, o.Timeout)
	}
	return fmt.Sprintf("%s %s", o.Action, o.Prefix)
}

// Family is the address family a set holds.
type Family uint8

// The two families a list maps to: ROOT (IPv4) and ROOT6 (IPv6).
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "inet"
	case IPv6:
		return "inet6"
	}
	return fmt.Sprintf("family(%d)", uint8(f))
}

// FamilyOf returns the family of p.
func FamilyOf(p netip.Prefix) Family {
	if p.Addr().Is4() {
		return IPv4
	}
	return IPv6
}

// SetSpec names a set and says what Ensure should create when it is missing.
type SetSpec struct {
	Name    string
	Family  Family
	MaxElem uint32 // capacity of a created set; 0 means DefaultMaxElem
	Create  bool   // create the set when it does not exist
}

// DefaultMaxElem is the capacity of the sets vallum creates: room for real
// feeds of millions of addresses (the ipset default of 65,536 is not). The
// kernel allocates as the set grows, so a large cap costs nothing up front.
const DefaultMaxElem = 1 << 22

// SetInfo describes a kernel set as the backend found it.
type SetInfo struct {
	Name     string
	Family   Family
	Type     string // "hash:net", "ipv4_addr", ...
	Size     int    // current number of entries; -1 when the backend cannot count cheaply
	MaxElem  uint32 // capacity; 0 when the backend has no fixed limit
	Comments bool   // entries can carry a comment
	Created  bool   // Ensure created the set just now
}

// Entry is one member of a set, as List returns it.
type Entry struct {
	Prefix  netip.Prefix
	Timeout wire.Timeout // seconds left; 0 for a permanent entry
	Comment string
}

// Backend applies set membership changes to the kernel. The bridge calls
// Apply from a single goroutine, in message order, a batch at a time; its
// watcher calls Ensure, Info and Has (see Prober) beside it, and the
// metrics and health handlers call Info, so a backend serialises its own
// calls (backendtest checks it under -race).
type Backend interface {
	// Ensure checks that the set exists and can hold spec.Family prefixes
	// with timeouts, creating it when missing and spec.Create is set.
	// An existing set is never altered, flushed or destroyed.
	Ensure(ctx context.Context, spec SetSpec) (SetInfo, error)
	// Apply applies ops in order to the named set. Add is idempotent and
	// refreshes the timeout of an existing entry, unless the op says Keep:
	// then an existing entry is left as it is and the op refused with
	// ErrExists. Del of an absent entry is no error. Ops the kernel refuses one by one (a full set, a wrong
	// family) are reported in an *ApplyError while all others still apply;
	// any other error means the batch may not have been applied.
	Apply(ctx context.Context, set string, ops []Op) error
	// List returns every entry of the set with its remaining timeout.
	List(ctx context.Context, set string) ([]Entry, error)
	// Info returns the set's header: type, size and capacity. It must be
	// cheap (metrics and health checks call it): a backend that could only
	// count by listing every entry reports Size -1.
	Info(ctx context.Context, set string) (SetInfo, error)
	// Close releases the backend's sockets.
	Close() error
}

// Errors the backends wrap, so that callers can branch with errors.Is.
var (
	ErrNoSet   = errors.New("set does not exist")
	ErrSetFull = errors.New("set is full")
	ErrFamily  = errors.New("address family does not match the set")
	ErrSetType = errors.New("set type cannot hold this entry")
	ErrExists  = errors.New("the set already holds this entry")
)

// ApplyError reports the ops of a batch that the kernel refused. Every op
// not listed here was applied.
type ApplyError struct {
	Set    string
	Failed []OpError
}

// OpError is one refused op and the reason.
type OpError struct {
	Op  Op
	Err error
}

func (e *ApplyError) Error() string {
	if len(e.Failed) == 1 {
		return fmt.Sprintf("set %q: %s: %v", e.Set, e.Failed[0].Op, e.Failed[0].Err)
	}
	return fmt.Sprintf("set %q: %d ops refused, first %s: %v", e.Set, len(e.Failed), e.Failed[0].Op, e.Failed[0].Err)
}

// Unwrap lets errors.Is see the reasons of the refused ops.
func (e *ApplyError) Unwrap() []error {
	errs := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		errs[i] = f.Err
	}
	return errs
}
