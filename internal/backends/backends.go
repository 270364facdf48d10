// Package backends opens a kernel backend by its --backend name: ipset,
// nft, dryrun, or auto, which probes the system and picks ipset or nft.
package backends

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/dryrun"
	"github.com/vallum/vallum/bridge/ipset"
	"github.com/vallum/vallum/bridge/nft"
)

// Options are what the backends need to be opened.
type Options struct {
	NftTable string        // nft's table, "FAMILY NAME"
	Lists    []bridge.List // the lists; auto looks for their sets
	Logger   *slog.Logger
}

// names are the backends Open knows, sorted.
var names = []string{"auto", "dryrun", "ipset", "nft"}

// Known reports whether name is a backend.
func Known(name string) bool { return slices.Contains(names, name) }

// Names lists the backends, for an error message.
func Names() string { return strings.Join(names, ", ") }

// Open opens the backend called name. A switch rather than a map of
// openers: the router builds count every byte, and an init-time map of
// closures costs about a kilobyte more.
func Open(name string, o Options) (bridge.Backend, error) {
	switch name {
	case "ipset":
		return ipset.New(ipset.Options{Logger: o.Logger})
	case "nft":
		return nft.New(nft.Options{Table: o.NftTable, Logger: o.Logger})
	case "dryrun":
		return dryrun.New(o.Logger), nil
	case "auto":
		return openAuto(o)
	}
	return nil, fmt.Errorf("unknown backend %q", name)
}
