//go:build linux

package nft

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/netnstest"
	"github.com/vallum/vallum/internal/wire"
)

// nftIn runs the nft command inside ns (handed to nsenter as fd 3).
func nftIn(t *testing.T, ns netns.NsHandle, stdin string, args ...string) string {
	t.Helper()
	// A duplicate: the *os.File closes its fd when collected, and ns must
	// stay open for the rest of the test (else nsenter fails, now and then,
	// with EINVAL on a closed or reused fd).
	fd, err := unix.Dup(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "netns")
	defer f.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", "nft"}, args...)...)
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
	return string(out)
}

const fw4 = `table inet fw4 {
	set bl { type ipv4_addr; flags interval,timeout; timeout 1h; }
	set plain6 { type ipv6_addr; flags timeout; }
	set ports { type inet_service; }
}`

func TestExistingSetIsUsedAsIs(t *testing.T) {
	ns := netnstest.New(t)
	nftIn(t, ns, fw4, "-f", "-")
	b := openNft(t, ns, "inet fw4")
	defer b.Close()
	ctx := context.Background()

	info, err := b.Ensure(ctx, bridge.SetSpec{Name: "bl", Family: bridge.IPv4, Create: true})
	if err != nil || info.Created || !strings.Contains(info.Type, "interval") {
		t.Fatalf("Ensure(bl) = %+v, %v; want the existing interval set, not created", info, err)
	}
	ops := []bridge.Op{
		{Action: bridge.Add, Prefix: mustPrefix("192.0.2.7/32"), Timeout: 600, Comment: "vallum"},
		{Action: bridge.Add, Prefix: mustPrefix("198.51.100.0/24"), Timeout: wire.DefaultTimeout},
		{Action: bridge.Add, Prefix: mustPrefix("203.0.113.0/25"), Timeout: 0},
	}
	if err := b.Apply(ctx, "bl", ops); err != nil {
		t.Fatalf("Apply(bl): %v", err)
	}
	out := nftIn(t, ns, "", "list", "set", "inet", "fw4", "bl")
	for _, want := range []string{"192.0.2.7", `comment "vallum"`, "198.51.100.0/24", "flags interval,timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list set bl lacks %q:\n%s", want, out)
		}
	}
	timeouts := map[string]wire.Timeout{}
	list, _ := b.List(ctx, "bl")
	for _, e := range list {
		timeouts[e.Prefix.String()] = e.Timeout
	}
	// The set's default (1h) for DefaultTimeout; never for timeout 0.
	if d := timeouts["198.51.100.0/24"]; d < 3500 || d > 3600 || timeouts["203.0.113.0/25"] != 0 || len(timeouts) != 3 {
		t.Errorf("List(bl) timeouts = %v, want the /24 on the set's 1h default and the /25 permanent", timeouts)
	}
	if strings.Contains(nftIn(t, ns, "", "list", "table", "inet", "fw4"), "bl_net") {
		t.Errorf("Ensure on an existing set created a companion set")
	}

	if _, err := b.Ensure(ctx, bridge.SetSpec{Name: "plain6", Family: bridge.IPv4}); !errors.Is(err, bridge.ErrFamily) || !strings.Contains(err.Error(), "plain6") {
		t.Errorf("Ensure(ipv6 set as IPv4) = %v, want ErrFamily naming the set", err)
	}
	if _, err := b.Ensure(ctx, bridge.SetSpec{Name: "ports", Family: bridge.IPv4}); !errors.Is(err, bridge.ErrSetType) {
		t.Errorf("Ensure(inet_service set) = %v, want ErrSetType", err)
	}

	// A set without the interval flag takes addresses but not prefixes.
	err = b.Apply(ctx, "plain6", []bridge.Op{
		{Action: bridge.Add, Prefix: mustPrefix("2001:db8:1::/48"), Timeout: wire.DefaultTimeout},
		{Action: bridge.Add, Prefix: mustPrefix("2001:db8::1/128"), Timeout: 60},
	})
	var ae *bridge.ApplyError
	if !errors.As(err, &ae) || len(ae.Failed) != 1 || !errors.Is(err, bridge.ErrSetType) {
		t.Fatalf("Apply(prefix into plain set) = %v, want one ErrSetType", err)
	}
	if out := nftIn(t, ns, "", "list", "set", "inet", "fw4", "plain6"); !strings.Contains(out, "2001:db8::1") {
		t.Errorf("plain6 lacks the address applied next to the refused prefix:\n%s", out)
	}
}

func mustPrefix(s string) netip.Prefix {
	p, err := wire.ParsePrefix(s)
	if err != nil {
		panic(err)
	}
	return p
}
