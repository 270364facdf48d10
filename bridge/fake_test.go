package bridge

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/vallum/vallum/internal/wire"
)

// fakeBackend is an in-memory Backend that records what the kernel would
// hold. It refuses the wrong family per op, as the real backends do.
type fakeBackend struct {
	mu      sync.Mutex
	sets    map[string]map[netip.Prefix]Entry
	family  map[string]Family
	applies int // Apply calls, to see batching
}

func newFake() *fakeBackend {
	return &fakeBackend{sets: map[string]map[netip.Prefix]Entry{}, family: map[string]Family{}}
}

func (f *fakeBackend) Ensure(_ context.Context, s SetSpec) (SetInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.sets[s.Name]
	if !ok && !s.Create {
		return SetInfo{}, fmt.Errorf("fake %q: %w", s.Name, ErrNoSet)
	}
	if !ok {
		f.sets[s.Name], f.family[s.Name] = map[netip.Prefix]Entry{}, s.Family
	}
	return SetInfo{Name: s.Name, Family: s.Family, Comments: true, Created: !ok}, nil
}

func (f *fakeBackend) Apply(_ context.Context, set string, ops []Op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	m, ok := f.sets[set]
	if !ok {
		return fmt.Errorf("fake %q: %w", set, ErrNoSet)
	}
	ae := &ApplyError{Set: set}
	for _, op := range ops {
		if FamilyOf(op.Prefix) != f.family[set] {
			ae.Failed = append(ae.Failed, OpError{op, ErrFamily})
			continue
		}
		if _, ok := m[op.Prefix]; ok && op.Action == Add && op.Keep {
			ae.Failed = append(ae.Failed, OpError{op, ErrExists})
			continue
		}
		if op.Action == Add {
			m[op.Prefix] = Entry{Prefix: op.Prefix, Timeout: max(op.Timeout, 0), Comment: op.Comment}
		} else {
			delete(m, op.Prefix)
		}
	}
	if len(ae.Failed) > 0 {
		return ae
	}
	return nil
}

func (f *fakeBackend) List(_ context.Context, set string) ([]Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var l []Entry
	for _, e := range f.sets[set] {
		l = append(l, e)
	}
	return l, nil
}

func (f *fakeBackend) Info(_ context.Context, set string) (SetInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return SetInfo{Name: set, Size: len(f.sets[set])}, nil
}

func (f *fakeBackend) Close() error { return nil }

// members returns the set's prefixes as sorted strings.
func (f *fakeBackend) members(set string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var l []string
	for p := range f.sets[set] {
		l = append(l, wire.FormatPrefix(p))
	}
	sort.Strings(l)
	return l
}

func (f *fakeBackend) entry(set, p string) (Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.sets[set][netip.MustParsePrefix(p)]
	return e, ok
}

// put adds an entry directly, as a person with `ipset add` would.
func (f *fakeBackend) put(set string, fam Family, p, comment string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sets[set] == nil {
		f.sets[set], f.family[set] = map[netip.Prefix]Entry{}, fam
	}
	pr := netip.MustParsePrefix(p)
	f.sets[set][pr] = Entry{Prefix: pr, Comment: comment}
}

func (f *fakeBackend) count(set string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sets[set])
}

// destroy removes the set, as `ipset destroy` or a firewall reload would.
func (f *fakeBackend) destroy(set string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sets, set)
	delete(f.family, set)
}

// create makes an empty set, as a person or a firewall script would.
func (f *fakeBackend) create(set string, fam Family) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets[set], f.family[set] = map[netip.Prefix]Entry{}, fam
}
