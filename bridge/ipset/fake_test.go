package ipset

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vallum/vallum/bridge"
)

// fakeSet is a kernel set as fakeKernel keeps it.
type fakeSet struct {
	h       header
	entries map[netip.Prefix]bridge.Entry
	order   []netip.Prefix
}

// fakeKernel answers the backend's requests the way the kernel does, as
// far as the backend relies on it: it decodes each request, applies a batch
// entry by entry, stops at the first refusal and reports its line.
type fakeKernel struct {
	sets     map[string]*fakeSet
	requests []int // entries per add/del message, in order
	fail     error // when set, every request fails with it
	closed   bool
}

func newFakeKernel() *fakeKernel { return &fakeKernel{sets: map[string]*fakeSet{}} }

func (k *fakeKernel) close() error { k.closed = true; return nil }

func (k *fakeKernel) exec(req []byte, fn func([]byte) error) error {
	if k.fail != nil {
		return k.fail
	}
	ms, err := splitMessages(req)
	if err != nil || len(ms) != 1 || binary.NativeEndian.Uint32(req[0:4]) != uint32(len(req)) {
		return fmt.Errorf("fake kernel: malformed request: %v", err)
	}
	var name, typ string
	var family uint8
	var adt, data []byte
	attrs(ms[0].payload[4:], func(t uint16, v []byte) error {
		switch t {
		case attrSetName:
			name = cstring(v)
		case attrTypeName:
			typ = cstring(v)
		case attrFamily:
			family = v[0]
		case attrADT:
			adt = v
		case attrData:
			data = v
		}
		return nil
	})
	switch cmd := int(ms[0].typ & 0xff); cmd {
	case cmdType:
		var m builder
		m.begin(cmdType, 0)
		m.str(attrTypeName, typ)
		m.u8(attrRevision, 7)
		return fn(m.bytes()[nlmsgHdrLen:])
	case cmdCreate:
		if k.sets[name] != nil {
			return &kernelError{Code: int(syscall.EEXIST)}
		}
		h := header{name: name, typ: typ, family: family}
		attrs(data, h.data)
		k.sets[name] = &fakeSet{h: h, entries: map[netip.Prefix]bridge.Entry{}}
		return nil
	case cmdHeader:
		s := k.sets[name]
		if s == nil {
			return &kernelError{Code: int(syscall.ENOENT)}
		}
		var m builder
		m.begin(cmdHeader, 0)
		m.str(attrSetName, s.h.name)
		m.str(attrTypeName, s.h.typ)
		m.u8(attrFamily, s.h.family)
		return fn(m.bytes()[nlmsgHdrLen:])
	case cmdList:
		s := k.sets[name]
		if s == nil {
			return &kernelError{Code: int(syscall.ENOENT)}
		}
		return fn(s.list()[nlmsgHdrLen:])
	case cmdAdd, cmdDel:
		s := k.sets[name]
		if s == nil {
			return &kernelError{Code: int(syscall.ENOENT)}
		}
		return k.adt(s, cmd, adt, binary.NativeEndian.Uint16(req[6:8])&nlmExcl != 0)
	}
	return &kernelError{Code: errProtocol}
}

// adt applies the entries of a batch in order, as ip_set_ad() does.
func (k *fakeKernel) adt(s *fakeSet, cmd int, adt []byte, excl bool) error {
	n := 0
	err := attrs(adt, func(t uint16, v []byte) error {
		n++
		en, err := parseEntry(v)
		if err != nil {
			return &kernelError{Code: errProtocol}
		}
		line := lineOf(v)
		if cmd == cmdDel {
			delete(s.entries, en.Prefix)
			return nil
		}
		if _, ok := s.entries[en.Prefix]; ok && excl {
			return &kernelError{Code: errExist, Line: line}
		}
		if _, ok := s.entries[en.Prefix]; !ok && uint32(len(s.entries)) >= s.h.maxElem {
			return &kernelError{Code: errTypeSpecific, Line: line}
		}
		if _, ok := s.entries[en.Prefix]; !ok {
			s.order = append(s.order, en.Prefix)
		}
		s.entries[en.Prefix] = en
		return nil
	})
	k.requests = append(k.requests, n)
	return err
}

// lineOf returns the IPSET_ATTR_LINENO of one entry.
func lineOf(data []byte) uint32 {
	var line uint32
	attrs(data, func(t uint16, v []byte) error {
		if t == attrLineNo {
			line = binary.NativeEndian.Uint32(v)
		}
		return nil
	})
	return line
}

// list encodes the set as one IPSET_CMD_LIST message of a dump.
func (s *fakeSet) list() []byte {
	var m builder
	m.begin(cmdList, 0)
	m.str(attrSetName, s.h.name)
	m.str(attrTypeName, s.h.typ)
	m.u8(attrFamily, s.h.family)
	d := m.nest(attrData)
	m.be32(attrMaxElem, s.h.maxElem)
	m.be32(attrElements, uint32(len(s.entries)))
	if s.h.timeout {
		m.be32(attrTimeout, 0)
	}
	if s.h.comments {
		m.be32(attrCadtFlags, withComment)
	}
	m.end(d)
	adt := m.nest(attrADT)
	for _, p := range s.order {
		if en, ok := s.entries[p]; ok {
			op := bridge.Op{Action: bridge.Add, Prefix: en.Prefix, Timeout: en.Timeout, Comment: en.Comment}
			m.entry(s.h, op, 0)
		}
	}
	m.end(adt)
	return m.bytes()
}
