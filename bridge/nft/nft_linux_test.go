//go:build linux

package nft

import (
	"testing"

	"github.com/vishvananda/netns"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/backendtest"
)

var _ bridge.Backend = (*Backend)(nil)

func open(t *testing.T, ns netns.NsHandle) bridge.Backend {
	return openNft(t, ns, "")
}

func openNft(t testing.TB, ns netns.NsHandle, table string) *Backend {
	t.Helper()
	b, err := New(Options{NetNS: int(ns), Table: table})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, open)
}
