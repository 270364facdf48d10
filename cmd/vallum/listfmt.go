//go:build !vallum_small

package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/vallum/vallum/internal/wire"
)

// listFormatsBuilt: `vallum list -o`; not in the 32-bit router builds
// (listfmt_small.go).
const listFormatsBuilt = true

// listFormats are the outputs of `vallum list -o`.
var listFormats = map[string]func(io.Writer, []ban, time.Time) error{
	"table": printTable,
	"json":  printJSON,
	"csv":   printCSV,
	"plain": printPlain,
}

// outputFlag is list's -o.
func outputFlag(f *pflag.FlagSet) {
	f.StringP("output", "o", "table", "output: table, json (one object a line), csv (DynFW greylist shape) or plain (a netset)")
}

// printTable is -o table, the default: printBans.
func printTable(w io.Writer, bans []ban, now time.Time) error { printBans(w, bans, now); return nil }

// checkListFormat says what is wrong with an -o format, or nil.
func checkListFormat(format string) error {
	if _, ok := listFormats[format]; !ok {
		return fmt.Errorf("-o %q: want table, json, csv or plain", format)
	}
	return nil
}

// printList writes the active bans in format (see listFormats).
func printList(w io.Writer, format string, bans []ban, now time.Time) error {
	if err := checkListFormat(format); err != nil {
		return err
	}
	f := listFormats[format]
	bw := bufio.NewWriter(w)
	if err := f(bw, bans, now); err != nil {
		return err
	}
	return bw.Flush()
}

// active calls fn for each ban not yet expired at now.
func active(bans []ban, now time.Time, fn func(ban)) {
	for _, b := range bans {
		if _, ok := b.state.Remaining(now); ok {
			fn(b)
		}
	}
}

// banJSON is one line of -o json: the state's own fields and units
// (at in Unix milliseconds, expires in Unix seconds, absent: permanent).
type banJSON struct {
	Prefix  string `json:"prefix"`
	At      int64  `json:"at"`
	Expires int64  `json:"expires,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Origin  string `json:"origin,omitempty"`
	Count   int    `json:"count,omitempty"` // the keeper's escalation count
}

// printJSON writes one JSON object a line, for jq and scripts.
func printJSON(w io.Writer, bans []ban, now time.Time) error {
	enc := json.NewEncoder(w)
	var err error
	active(bans, now, func(b ban) {
		j := banJSON{Prefix: wire.FormatPrefix(b.prefix), At: b.state.At.UnixMilli(), Reason: b.state.Reason, Origin: b.state.Origin, Count: b.state.Count}
		if !b.state.Expires.IsZero() {
			j.Expires = b.state.Expires.Unix()
		}
		if err == nil {
			err = enc.Encode(j)
		}
	})
	return err
}

// printCSV writes the Turris DynFW greylist's shape, `Address,Tags`, the
// reason as the tag, so that what reads that list reads this one (and
// `vallum import --format dynfw-csv` too).
func printCSV(w io.Writer, bans []ban, now time.Time) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"Address", "Tags"})
	active(bans, now, func(b ban) { cw.Write([]string{wire.FormatPrefix(b.prefix), b.state.Reason}) })
	cw.Flush()
	return cw.Error()
}

// printPlain writes a FireHOL-style netset: comment lines, then one
// address or prefix a line, which ipset restore scripts, other firewalls
// and `vallum import` read.
func printPlain(w io.Writer, bans []ban, now time.Time) error {
	n := 0
	active(bans, now, func(ban) { n++ })
	fmt.Fprintf(w, "#\n# vallum list, %s\n# %d entries\n#\n", now.UTC().Format(time.RFC3339), n)
	active(bans, now, func(b ban) { fmt.Fprintln(w, wire.FormatPrefix(b.prefix)) })
	return nil
}
