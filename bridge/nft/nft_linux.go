//go:build linux

package nft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// DefaultTable is the table vallum uses unless Options.Table names another.
const DefaultTable = "inet vallum"

// netSuffix names the interval companion of a set vallum creates.
const netSuffix = "_net"

// Options configures a Backend.
type Options struct {
	NetNS  int          // fd of a network namespace; <= 0: the current one
	Table  string       // "FAMILY NAME", default DefaultTable; e.g. "inet fw4"
	Logger *slog.Logger // nil: discard
}

// Backend applies bridge ops to nftables sets. Its methods are safe for
// concurrent use, though the bridge calls them from one goroutine.
type Backend struct {
	log   *slog.Logger
	conn  *nftables.Conn // queries and set, chain and rule creation
	raw   *netlink.Conn  // element batches, whose errors we read ourselves
	table *nftables.Table

	mu        sync.Mutex
	sets      map[string]*target // resolved sets by name
	warned    map[string]bool    // sets said to have no timeout flag
	dropTo    map[string]bool    // sets whose members are dropped as destinations too (DropTo); nil: none
	sensor    *SensorRule        // the scan sensor's rules end the input chain (Sensor); nil: none
	seq       uint32
	noDestroy bool // the kernel lacks NFT_MSG_DESTROYSETELEM (before 6.3)
}

// New opens the netlink sockets (in Options.NetNS when set) and keeps them
// open until Close. It does not touch the kernel's ruleset.
func New(o Options) (*Backend, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	table, err := parseTable(o.Table)
	if err != nil {
		return nil, err
	}
	ns := o.NetNS
	if ns < 0 {
		ns = 0
	}
	conn, err := nftables.New(nftables.WithNetNSFd(ns), nftables.AsLasting())
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		// qemu's user mode (router builds tried on a PC) passes no
		// netfilter netlink.
		return nil, fmt.Errorf("nftables netlink: netfilter netlink refused by the emulator or environment (qemu user mode has none; else modprobe nfnetlink): %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("nftables netlink: %w", err)
	}
	raw, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns})
	if err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("nftables netlink: %w", err)
	}
	// Errors then echo only the header of the refused message, not its
	// thousands of elements, so that many refusals fit the receive buffer.
	// (No extended acks: mdlayher/netlink v1.11 misparses them when capped.)
	_ = raw.SetOption(netlink.CapAcknowledge, true)
	setBufForce(raw, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, 32<<20)
	return &Backend{log: log, conn: conn, raw: raw, table: table, sets: map[string]*target{}, warned: map[string]bool{}, seq: 1 << 20}, nil
}

// parseTable reads "FAMILY NAME" (or a bare NAME, family inet).
func parseTable(s string) (*nftables.Table, error) {
	if s == "" {
		s = DefaultTable
	}
	f := strings.Fields(s)
	if len(f) == 1 {
		f = []string{"inet", f[0]}
	}
	if len(f) != 2 {
		return nil, fmt.Errorf("nft table %q: want \"FAMILY NAME\"", s)
	}
	fams := map[string]nftables.TableFamily{
		"inet": nftables.TableFamilyINet, "ip": nftables.TableFamilyIPv4, "ip6": nftables.TableFamilyIPv6,
		"bridge": nftables.TableFamilyBridge, "netdev": nftables.TableFamilyNetdev,
	}
	fam, ok := fams[f[0]]
	if !ok {
		return nil, fmt.Errorf("nft table %q: unknown family %q", s, f[0])
	}
	return &nftables.Table{Family: fam, Name: f[1]}, nil
}

// Close releases the netlink sockets. The sets stay in the kernel.
func (b *Backend) Close() error {
	err := b.conn.CloseLasting()
	if rerr := b.raw.Close(); err == nil {
		err = rerr
	}
	return err
}

// setBufForce raises a socket buffer past the sysctl cap (we hold
// CAP_NET_ADMIN anyway, as nft does), falling back to the capped option.
func setBufForce(c *netlink.Conn, force, plain, n int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, n) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, n)
		}
	})
}

// ctxErr is ctx's error, for calls that cannot be interrupted midway.
func ctxErr(ctx context.Context) error { return ctx.Err() }
