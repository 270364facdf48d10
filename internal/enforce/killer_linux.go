//go:build linux

package enforce

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vallum/vallum/internal/conntrack"
	"github.com/vallum/vallum/internal/sockdiag"
)

var errUnsupported = sockdiag.ErrUnsupported

// New opens the netlink sockets now, so that a kernel or a namespace that
// refuses them fails at start, and says once, at start, when the kernel
// cannot close sockets (conntrack entries are deleted all the same).
func New(o Options) (*Killer, error) {
	dial := func(kind string) (walker, error) {
		if kind == "sockets" {
			c, err := sockdiag.Dial(o.NetNS)
			return sockWalker{c}, err
		}
		c, err := conntrack.Dial(o.NetNS)
		return ctWalker{c}, err
	}
	k := newKiller(o, dial)
	var err error
	if k.ct, err = dial("conntrack"); err != nil {
		return nil, err
	}
	s, err := sockdiag.Dial(o.NetNS)
	if err != nil {
		k.ct.Close()
		return nil, err
	}
	switch err := s.CanDestroy(); {
	case errors.Is(err, sockdiag.ErrUnsupported):
		s.Close()
		k.socks = nop{}
		k.log.Warn("--kill-connections: local TCP connections of banned addresses cannot be closed: " + err.Error() +
			"; their conntrack entries are deleted all the same")
	case err != nil:
		s.Close()
		k.ct.Close()
		return nil, fmt.Errorf("--kill-connections: %w", err)
	default:
		k.socks = sockWalker{s}
	}
	return k, nil
}

type sockWalker struct{ *sockdiag.Conn }

func (w sockWalker) walk(match func(a netip.Addr) bool) (int, error) { return w.Destroy(match) }

type ctWalker struct{ *conntrack.Conn }

func (w ctWalker) walk(match func(a netip.Addr) bool) (int, error) { return w.Delete(match) }
