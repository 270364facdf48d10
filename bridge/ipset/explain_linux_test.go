//go:build linux

package ipset

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// Each refusal says what to fix; a refused netfilter netlink socket
// (qemu's user mode, where the router builds are tried) is not blamed on
// a missing ip_set module.
func TestExplain(t *testing.T) {
	for _, c := range []struct {
		err       error
		want, not string
	}{
		{syscall.EPROTONOSUPPORT, "refused by the emulator or environment", "ip_set"},
		{syscall.ENOENT, "modprobe ip_set", "emulator"},
		{syscall.EOPNOTSUPP, "modprobe ip_set", "emulator"},
		{syscall.EPERM, "CAP_NET_ADMIN", "emulator"},
	} {
		got := explain(c.err)
		if !strings.Contains(got.Error(), c.want) || strings.Contains(got.Error(), c.not) || !errors.Is(got, c.err) {
			t.Errorf("explain(%v) = %q; want it to say %q, not %q, and wrap the errno", c.err, got, c.want, c.not)
		}
	}
}
