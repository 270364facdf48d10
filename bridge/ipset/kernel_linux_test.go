//go:build linux

package ipset_test

import (
	"testing"

	"github.com/vishvananda/netns"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/backendtest"
	"github.com/vallum/vallum/bridge/ipset"
)

func open(t *testing.T, ns netns.NsHandle) bridge.Backend {
	t.Helper()
	be, err := ipset.New(ipset.Options{NetNS: int(ns)})
	if err != nil {
		t.Fatalf("ipset.New: %v", err)
	}
	return be
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, open)
}
