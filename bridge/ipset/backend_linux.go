//go:build linux

package ipset

import (
	"errors"
	"fmt"
	"syscall"

	ipsetnl "github.com/lrh3321/ipset-go"
	"github.com/vishvananda/netns"
)

// New opens the backend's netlink socket, in the namespace o.NetNS when it
// is > 0, and checks that the kernel speaks the ipset protocol vallum uses.
// The socket stays open until Close.
func New(o Options) (*Backend, error) {
	if err := checkProtocol(o.NetNS); err != nil {
		return nil, err
	}
	s, err := dial(o.NetNS)
	if err != nil {
		return nil, fmt.Errorf("ipset: %w", explain(err))
	}
	return newBackend(s, o.Logger), nil
}

// checkProtocol asks the kernel for its ipset protocol range with
// ipset-go, on a short-lived socket of its own. ipset-go panics on some
// answers it does not expect; the panic becomes an error here, the one
// place that calls it.
func checkProtocol(ns int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ipset: protocol check: %v", r)
		}
	}()
	target := netns.None()
	if ns > 0 {
		target = netns.NsHandle(ns)
	}
	h, err := ipsetnl.NewHandleAt(target)
	if err != nil {
		return fmt.Errorf("ipset: open netlink socket: %w", explain(err))
	}
	defer h.Close()
	proto, minProto, err := h.Protocol()
	if err != nil {
		return fmt.Errorf("ipset: protocol check: %w", explain(err))
	}
	if proto < protocolVersion || (minProto != 0 && minProto > protocolVersion) {
		return fmt.Errorf("ipset: kernel speaks ipset protocol %d..%d, vallum needs %d", minProto, proto, protocolVersion)
	}
	return nil
}

// explain says what to fix for the errors a missing capability or kernel
// module gives.
func explain(err error) error {
	switch {
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("needs CAP_NET_ADMIN: %w", err)
	case errors.Is(err, syscall.EPROTONOSUPPORT):
		// socket(NETLINK_NETFILTER) itself refused: qemu's user mode
		// (router builds tried on a PC) passes no netfilter netlink.
		return fmt.Errorf("netfilter netlink refused by the emulator or environment (qemu user mode has none; else modprobe nfnetlink): %w", err)
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("kernel has no ipset support (modprobe ip_set): %w", err)
	}
	return err
}

// codeText is the kernel's meaning of an error code: ipset-go names the
// generic IPSET_ERR_* codes, syscall the errno values.
func codeText(code int) string {
	if code >= ipsetnl.IPSET_ERR_PRIVATE {
		return ipsetnl.IPSetError(code).Error()
	}
	return syscall.Errno(code).Error()
}
