//go:build !(vallum_small && (mips || mipsle))

package main

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/retained"
	"github.com/vallum/vallum/internal/wire"
)

// pendingEntry is one address's reports short of its list's quorum.
type pendingEntry struct {
	prefix netip.Prefix
	p      wire.Pending
}

// collectPending reads the reports the list's keeper keeps pending
// (wire.PendingTopic), to the end of the retained messages, as
// collectState reads the bans.
func collectPending(cl mqtt.Client, root string, warn io.Writer, tm retained.Timing) ([]pendingEntry, error) {
	var mu sync.Mutex
	got := map[netip.Prefix]wire.Pending{}
	on := func(_ mqtt.Client, m mqtt.Message) {
		rest, ok := strings.CutPrefix(m.Topic(), wire.PendingPrefix+root+"/")
		p, err := wire.ParsePrefix(rest)
		if !ok || err != nil { // a list under root's
			return
		}
		pd, err := wire.DecodePending(m.Payload())
		mu.Lock()
		defer mu.Unlock()
		if err == nil && len(m.Payload()) > 0 && len(pd.Reports) > 0 {
			got[p] = pd
		} else {
			delete(got, p)
		}
	}
	opts := cl.OptionsReader()
	marker := wire.MarkerTopic(opts.ClientID())
	rd, err := retained.Subscribe(cl, wire.PendingFilter(root), 0, marker, on)
	if err != nil {
		return nil, err
	}
	if !rd.Marked {
		fmt.Fprintf(warn, "vallum list: this login may not use %s, so the list ends at the first pause of %s\n", marker, tm.Quiet)
	}
	if err := rd.Wait(tm); err != nil && err != retained.Empty {
		return nil, fmt.Errorf("pending reports of %s: %v", root, err)
	}
	mu.Lock()
	defer mu.Unlock()
	out := make([]pendingEntry, 0, len(got))
	for p, pd := range got {
		out = append(out, pendingEntry{p, pd})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].prefix.Addr().Less(out[j].prefix.Addr()) })
	return out, nil
}

// printPending prints each address's reports: how many of how many a ban
// needs, and who reported when, asking how long.
func printPending(w io.Writer, ps []pendingEntry) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tREPORTS\tREPORTERS")
	for _, e := range ps {
		var by []string
		for _, r := range e.p.Reports {
			t := "permanent"
			if r.Timeout > 0 {
				t = (time.Duration(r.Timeout) * time.Second).String()
			}
			by = append(by, fmt.Sprintf("%s at %s for %s", r.By, r.At.Local().Format(time.DateTime), t))
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\n", wire.FormatPrefix(e.prefix), len(e.p.Reports), e.p.Need, strings.Join(by, ", "))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d addresses with pending reports\n", len(ps))
}
