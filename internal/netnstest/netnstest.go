// Package netnstest gives kernel tests a fresh network namespace of their
// own, so that the sets and rules they make never touch the host's.
package netnstest

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
)

// New returns a handle to a new, empty network namespace that is closed
// (and so removed) when the test ends. It skips the test unless it runs as
// root and may create namespaces.
//
// The calling goroutine's thread is switched back to its original namespace
// before New returns: tests reach the new namespace through the handle
// (ipset NewHandleAt, nftables WithNetNSFd), never through the thread, so no
// other goroutine can inherit it.
func New(t testing.TB) netns.NsHandle {
	t.Helper()
	RequireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("netns.Get: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if serr := netns.Set(orig); serr != nil {
		// The thread is stuck in the new namespace: make sure it dies
		// with the test rather than serve other goroutines.
		panic("netnstest: cannot return to the original namespace: " + serr.Error())
	}
	if errors.Is(err, syscall.EPERM) {
		t.Skip("netnstest: no permission to create a network namespace")
	}
	if err != nil {
		t.Fatalf("netns.New: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// RequireRoot skips the test unless it runs as root where netfilter's
// netlink answers: qemu's user mode, which runs the tests of the router
// builds (GOARCH=mips go test -exec qemu-mips-static), refuses it.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (kernel sets and network namespaces)")
	}
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_NETFILTER)
	if errors.Is(err, syscall.EPROTONOSUPPORT) {
		t.Skip("netfilter netlink refused (an emulator such as qemu user mode, or no nfnetlink in the kernel)")
	}
	if err == nil {
		syscall.Close(fd)
	}
}
