// Package backends opens a kernel backend by its --backend name: ipset,
// nft, dryrun, or auto, which probes the system and picks ipset or nft.
package backends

import (
	"log/slog"
	"sort"
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

// openers are the backends by name (blackbox's Probers map).
var openers = map[string]func(o Options) (bridge.Backend, error){
	"ipset": func(o Options) (bridge.Backend, error) { return ipset.New(ipset.Options{Logger: o.Logger}) },
	"nft": func(o Options) (bridge.Backend, error) {
		return nft.New(nft.Options{Table: o.NftTable, Logger: o.Logger})
	},
	"dryrun": func(o Options) (bridge.Backend, error) { return dryrun.New(o.Logger), nil },
	"auto":   openAuto,
}

// Known reports whether name is a backend.
func Known(name string) bool { _, ok := openers[name]; return ok }

// Names lists the backends, sorted, for an error message.
func Names() string {
	var n []string
	for k := range openers {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// Open opens the backend called name; the caller checked it with Known.
func Open(name string, o Options) (bridge.Backend, error) {
	return openers[name](o)
}
