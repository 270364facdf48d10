//go:build linux

package nft

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"golang.org/x/sys/unix"

	"github.com/vallum/vallum/bridge"
)

// target is one list's kernel sets: addr takes single addresses, net takes
// prefixes, and addresses too when addr is nil. Either may be nil.
type target struct {
	name   string
	family bridge.Family
	addr   *nftables.Set
	net    *nftables.Set
}

// setFor returns the set that takes p, or nil when none can.
func (t *target) setFor(p netip.Prefix) *nftables.Set {
	if p.IsSingleIP() && t.addr != nil {
		return t.addr
	}
	return t.net
}

// Ensure finds the set (and its NAME_net companion), checks that it holds
// spec.Family addresses, and creates both when missing and spec.Create.
func (b *Backend) Ensure(ctx context.Context, spec bridge.SetSpec) (bridge.SetInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.sets, spec.Name)
	t, err := b.lookup(spec.Name)
	created := false
	if errors.Is(err, bridge.ErrNoSet) && spec.Create {
		if err = b.create(spec); err != nil {
			return bridge.SetInfo{}, err
		}
		created = true
		t, err = b.lookup(spec.Name)
	}
	if err != nil {
		return bridge.SetInfo{}, err
	}
	if t.family != spec.Family {
		return bridge.SetInfo{}, fmt.Errorf("nft set %q holds %s addresses, want %s: %w", spec.Name, t.family, spec.Family, bridge.ErrFamily)
	}
	if s := t.addr; (s != nil && !s.HasTimeout || t.net != nil && !t.net.HasTimeout) && !b.warned[spec.Name] {
		b.log.Warn("set has no timeout flag: entries will be permanent", "set", spec.Name)
		b.warned[spec.Name] = true // the bridge checks its sets every second
	}
	b.sets[spec.Name] = t
	info, err := b.info(t)
	info.Created = created
	return info, err
}

// Info returns the combined header and size of the set and its companion.
func (b *Backend) Info(ctx context.Context, set string) (bridge.SetInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, err := b.resolve(set)
	if err != nil {
		return bridge.SetInfo{}, err
	}
	return b.info(t)
}

// info reads the sets' headers only. It does not count the elements:
// nftables has no count, and the kernel dumps a hash set in time that grows
// with the square of its size (100,000 elements: 1.2 s; 200,000: 4.3 s),
// too slow for every scrape of the metrics. Size is -1: unknown.
func (b *Backend) info(t *target) (bridge.SetInfo, error) {
	info := bridge.SetInfo{Name: t.name, Family: t.family, Comments: true, Size: -1}
	for _, s := range []*nftables.Set{t.addr, t.net} {
		if s == nil {
			continue
		}
		typ := s.KeyType.Name
		if s.Interval {
			typ += " interval"
		}
		if info.Type != "" {
			typ = info.Type + " + " + typ
		}
		info.Type = typ
	}
	switch {
	case t.addr != nil:
		info.MaxElem = t.addr.Size
	case t.net != nil:
		info.MaxElem = t.net.Size / 2 // an interval takes two elements
	}
	return info, nil
}

// resolve returns the cached target of set, looking it up on first use.
func (b *Backend) resolve(set string) (*target, error) {
	if t, ok := b.sets[set]; ok {
		return t, nil
	}
	t, err := b.lookup(set)
	if err != nil {
		return nil, err
	}
	b.sets[set] = t
	return t, nil
}

// lookup reads the set and its companion from the kernel and checks types.
func (b *Backend) lookup(name string) (*target, error) {
	s, err := b.getSet(name)
	if err != nil {
		return nil, err
	}
	fam, err := keyFamily(s)
	if err != nil {
		return nil, err
	}
	t := &target{name: name, family: fam}
	if s.Interval {
		t.net = s
		return t, nil
	}
	t.addr = s
	if c, err := b.getSet(name + netSuffix); err == nil && c.Interval {
		if cf, err := keyFamily(c); err == nil && cf == fam {
			t.net = c
		}
	}
	return t, nil
}

func (b *Backend) getSet(name string) (*nftables.Set, error) {
	s, err := b.conn.GetSetByName(b.table, name)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("nft set %q in table %s %s: %w", name, familyName(b.table.Family), b.table.Name, bridge.ErrNoSet)
	}
	if err != nil {
		return nil, fmt.Errorf("nft get set %q: %w", name, err)
	}
	return s, nil
}

// keyFamily says which family an existing set holds, refusing maps,
// concatenations and non-address keys.
func keyFamily(s *nftables.Set) (bridge.Family, error) {
	if s.IsMap || s.Concatenation {
		return 0, fmt.Errorf("nft set %q is a map or concatenation: %w", s.Name, bridge.ErrSetType)
	}
	switch s.KeyType.Name {
	case nftables.TypeIPAddr.Name:
		return bridge.IPv4, nil
	case nftables.TypeIP6Addr.Name:
		return bridge.IPv6, nil
	}
	return 0, fmt.Errorf("nft set %q has type %q, want an address type: %w", s.Name, s.KeyType.Name, bridge.ErrSetType)
}

// create makes the table (when missing) and the set pair in one
// transaction. Adding an existing table is no error and changes nothing.
func (b *Backend) create(spec bridge.SetSpec) error {
	key := nftables.TypeIPAddr
	if spec.Family == bridge.IPv6 {
		key = nftables.TypeIP6Addr
	}
	size := spec.MaxElem
	if size == 0 {
		size = bridge.DefaultMaxElem
	}
	b.conn.AddTable(b.table)
	sets := []*nftables.Set{
		{Table: b.table, Name: spec.Name, KeyType: key, HasTimeout: true, Size: size},
		{Table: b.table, Name: spec.Name + netSuffix, KeyType: key, HasTimeout: true, Interval: true, Size: uint32(min(2*uint64(size), math.MaxUint32))},
	}
	for _, s := range sets {
		s.KeyByteOrder = binaryutil.BigEndian
		if _, err := b.getSet(s.Name); err == nil {
			continue // a companion left from before: keep it as it is
		}
		if err := b.conn.AddSet(s, nil); err != nil {
			return fmt.Errorf("nft create set %q: %w", s.Name, err)
		}
	}
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("nft create set %q: %w", spec.Name, err)
	}
	b.log.Info("created set", "set", spec.Name, "table", b.table.Name, "size", size)
	return nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprint(uint8(f))
}
