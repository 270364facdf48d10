// Package ipset is the bridge.Backend for ipset, over netlink.
//
// Sets are read, created and changed with netlink messages built here, not
// through lrh3321/ipset-go's Handle: that library sends IPv6 addresses in the
// IPv4 attribute, lists IPv6 entries without their address, cannot set
// maxelem, sends one request per entry and panics on some kernel answers.
// It is kept for what it does well, the protocol version check in New and
// the text of the kernel's ipset error codes.
package ipset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"syscall"

	"github.com/vallum/vallum/bridge"
)

// Options configures New.
type Options struct {
	// NetNS is the fd of a network namespace to work in (a netns.NsHandle);
	// <= 0 means the namespace of the calling process.
	NetNS int
	// Logger receives the backend's few log lines; nil discards them.
	Logger *slog.Logger
}

// conn is the netlink socket one level below the backend; unit tests fake
// it. exec sends one request and calls fn with the payload of each data
// message of the answer (a dump may have many) until the kernel's ACK or
// NLMSG_DONE. A refusal by the kernel is a *kernelError.
type conn interface {
	exec(req []byte, fn func(payload []byte) error) error
	close() error
}

// Backend is a bridge.Backend that keeps one netlink socket open.
// It is safe for concurrent use; calls are serialised.
type Backend struct {
	mu       sync.Mutex
	c        conn
	log      *slog.Logger
	m        builder
	sets     map[string]header // headers of the sets Apply has seen
	maxBatch int               // entries per netlink message
}

// maxNameLen is IPSET_MAXNAMELEN without the terminating NUL.
const maxNameLen = 31

// defaultBatch is the most entries sent in one message; the 64 KiB limit
// of maxMsgBytes usually binds first (~1,600 IPv4 entries with timeouts).
// Measured in a netns here (BenchmarkApply, IPv4 with timeouts, 5 batches
// of 10,000): 1 entry per message ~0.6M adds/s, 64 ~2.0M/s, 2,048
// ~1.7-2.8M/s. Beyond that the kernel's per-entry work dominates.
const defaultBatch = 2048

var (
	_ bridge.Backend = (*Backend)(nil)
	_ bridge.Prober  = (*Backend)(nil) // Has, below
)

func newBackend(c conn, log *slog.Logger) *Backend {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Backend{c: c, log: log, sets: map[string]header{}, maxBatch: defaultBatch}
}

// Close closes the netlink socket. It never touches the kernel sets.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.c.close()
}

// Ensure checks that the set exists and can hold spec.Family prefixes,
// creating a hash:net set when it is missing and spec.Create is set. An
// existing set is never altered: hash:net and hash:ip sets of the right
// family are accepted, anything else is an error wrapping
// bridge.ErrSetType or bridge.ErrFamily. A set without timeout support is
// accepted, but Apply then adds its entries without timeouts (logged once).
func (b *Backend) Ensure(ctx context.Context, spec bridge.SetSpec) (bridge.SetInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.unchanged(spec.Name); ok && check(h, spec.Family) == nil {
		return h.info(), nil
	}
	h, err := b.header(spec.Name)
	created := false
	if errors.Is(err, bridge.ErrNoSet) && spec.Create {
		if err = b.create(spec); err == nil {
			created = true
			h, err = b.header(spec.Name)
		}
	}
	if err != nil {
		return bridge.SetInfo{}, err
	}
	if err := check(h, spec.Family); err != nil {
		return bridge.SetInfo{}, err
	}
	b.remember(h)
	info := h.info()
	info.Created = created
	return info, nil
}

// unchanged returns the cached header of a set that still exists with the
// same type and family, at the cost of one IPSET_CMD_HEADER: the bridge
// checks its sets every second. Its size is as last read.
func (b *Backend) unchanged(name string) (header, bool) {
	h, ok := b.sets[name]
	if !ok {
		return h, false
	}
	var now header
	err := b.c.exec(b.m.encodeHeader(name), func(p []byte) error { return parseList(p, &now, nil) })
	return h, err == nil && now.typ == h.typ && now.family == h.family
}

// check says whether vallum can use the existing set h for family f.
func check(h header, f bridge.Family) error {
	if h.typ != "hash:net" && h.typ != "hash:ip" {
		return fmt.Errorf("ipset %q is of type %s, want hash:net or hash:ip: %w", h.name, h.typ, bridge.ErrSetType)
	}
	if got := familyOf(h.family); got != f {
		return fmt.Errorf("ipset %q has family %s, want %s: %w", h.name, got, f, bridge.ErrFamily)
	}
	return nil
}

// remember caches h for Apply, and says once per set when its timeouts
// cannot be honoured.
func (b *Backend) remember(h header) {
	if _, seen := b.sets[h.name]; !seen && !h.timeout {
		b.log.Warn("set has no timeout support: entries are added without timeouts", "set", h.name)
	}
	if _, seen := b.sets[h.name]; !seen && !h.comments {
		b.log.Info("set has no comment support: entries are added without comments", "set", h.name)
	}
	b.sets[h.name] = h
}

// create makes a hash:net set with timeout support (default 0, permanent)
// and comments, at the newest revision of hash:net the kernel has.
func (b *Backend) create(spec bridge.SetSpec) error {
	var rev uint8
	err := b.c.exec(b.m.encodeType("hash:net", spec.Family), func(p []byte) error {
		var h header
		err := parseList(p, &h, nil)
		rev = h.revision
		return err
	})
	if err != nil {
		return fmt.Errorf("ipset type hash:net: %w", b.kernelErr(err))
	}
	maxElem := spec.MaxElem
	if maxElem == 0 {
		maxElem = bridge.DefaultMaxElem
	}
	err = b.c.exec(b.m.encodeCreate(spec.Name, spec.Family, rev, maxElem), nil)
	var ke *kernelError
	if errors.As(err, &ke) && ke.Code == int(syscall.EEXIST) {
		return nil // made by someone else meanwhile: check it like any other
	}
	if err != nil {
		return fmt.Errorf("ipset create %q: %w", spec.Name, b.kernelErr(err))
	}
	b.log.Info("created set", "set", spec.Name, "family", spec.Family.String(), "maxelem", maxElem)
	return nil
}

// header reads the named set's header, as `ipset list -t` does.
func (b *Backend) header(name string) (header, error) {
	var h header
	if err := b.dump(name, true, &h, nil); err != nil {
		return h, err
	}
	return h, nil
}

// dump lists the named set into h and, unless entries is nil, its entries.
func (b *Backend) dump(name string, headerOnly bool, h *header, entries *[]bridge.Entry) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("ipset %q: name must have 1 to %d bytes", name, maxNameLen)
	}
	err := b.c.exec(b.m.encodeList(name, headerOnly), func(p []byte) error {
		return parseList(p, h, entries)
	})
	if err != nil {
		return b.setErr(name, err)
	}
	return nil
}

// setErr turns an error of a request about one set into what callers see.
func (b *Backend) setErr(name string, err error) error {
	var ke *kernelError
	if errors.As(err, &ke) && ke.Code == int(syscall.ENOENT) {
		delete(b.sets, name)
		return fmt.Errorf("ipset %q: %w", name, bridge.ErrNoSet)
	}
	return fmt.Errorf("ipset %q: %w", name, b.kernelErr(err))
}

// kernelErr adds the kernel's own words to a kernel error code.
func (b *Backend) kernelErr(err error) error {
	var ke *kernelError
	if !errors.As(err, &ke) {
		return err
	}
	return fmt.Errorf("%s: %w", codeText(ke.Code), err)
}

// Info returns the set's header: type, family, number of entries, maxelem
// and whether entries can carry comments.
func (b *Backend) Info(ctx context.Context, name string) (bridge.SetInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, err := b.header(name)
	if err != nil {
		return bridge.SetInfo{}, err
	}
	return h.info(), nil
}

// errExist is IPSET_ERR_EXIST: the kernel's answer to a test of an absent
// entry (errNotMember), and to an exclusive add of one already there.
const (
	errExist     = 4096 + 7
	errNotMember = errExist
)

// Has reports whether the set holds p (in a hash:net set, an address
// is held when a prefix holding it is), at the cost of one hash lookup in
// the kernel, whatever the set's size (a header read walks the whole set).
func (b *Backend) Has(ctx context.Context, set string, p netip.Prefix) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	op := bridge.Op{Action: bridge.Del, Prefix: p}
	h, err := b.lookup(set, []bridge.Op{op})
	if err != nil {
		return false, err
	}
	if precheck(h, op) != nil {
		return false, nil // the other family, or a prefix in a set of addresses
	}
	err = b.c.exec(b.m.encodeTest(h, p), nil)
	var ke *kernelError
	if errors.As(err, &ke) && ke.Code == errNotMember {
		return false, nil
	}
	if err != nil {
		return false, b.setErr(set, err)
	}
	return true, nil
}

// List returns every entry of the set, IPv4 or IPv6, with the seconds it
// has left (0 for a permanent entry) and its comment.
func (b *Backend) List(ctx context.Context, name string) ([]bridge.Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var h header
	entries := []bridge.Entry{}
	if err := b.dump(name, false, &h, &entries); err != nil {
		return nil, err
	}
	return entries, nil
}
