package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/listread"
	"github.com/vallum/vallum/internal/retained"
	"github.com/vallum/vallum/internal/wire"
)

func newListCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "list LIST",
		Short: "Print the bans the broker holds for a list, with expiry and reason",
		Args:  cobra.ExactArgs(1),
		RunE:  listCmd,
	}
	connFlags(c.Flags())
	if listFormatsBuilt {
		outputFlag(c.Flags()) // listfmt.go
	}
	c.Flags().Bool("pending", false, "print the reports the keeper holds short of the list's quorum, with who reported (pending.go)")
	c.Flags().Bool("partial-ok", false, "print what was read when the broker serves the list only in part (a warning on stderr, exit 0), rather than fail")
	return c
}

func listCmd(cmd *cobra.Command, args []string) error {
	c, _, err := setup(cmd)
	if err != nil {
		return err
	}
	l, err := bridge.ParseList(args[0])
	if err != nil {
		return err
	}
	if listFormatsBuilt {
		if err := checkListFormat(flagString(cmd, "output")); err != nil {
			return err
		}
	}
	cl, err := c.dial("list")
	if err != nil {
		return err
	}
	defer cl.Disconnect(250)
	if flagBool(cmd, "pending") {
		ps, err := collectPending(cl, l.Root, cmd.ErrOrStderr(), listTimes)
		if err == nil {
			printPending(cmd.OutOrStdout(), ps)
		}
		return err
	}
	bans, _, err := collectState(cl, l.Root, cmd.ErrOrStderr(), listTimes)
	if errors.Is(err, errPartial) && flagBool(cmd, "partial-ok") {
		fmt.Fprintf(cmd.ErrOrStderr(), "vallum list: %v; printing what was read (--partial-ok)\n", err)
	} else if err != nil {
		return err
	}
	if listFormatsBuilt {
		return printList(cmd.OutOrStdout(), flagString(cmd, "output"), bans, time.Now())
	}
	printBans(cmd.OutOrStdout(), bans, time.Now())
	return nil
}

type ban struct {
	prefix netip.Prefix
	state  wire.State
}

// listTimes: mochi takes over a second to start sending 100,000 retained
// bans here, and sends them in about two (ten times that on a loaded
// machine); a broker that sends nothing for a minute is not sending the list.
var listTimes = retained.Timing{Stall: time.Minute, Quiet: 2 * time.Second, Limit: 10 * time.Minute}

// collectState reads every retained ban of the list, to the end: the
// marker that a host or admin login publishes to itself on
// vallum/sync/CLIENT_ID coming back (see internal/retained). A login that
// may not use a marker (a reporter) gets the bans that come until they
// pause, and a warning saying so; when none comes at all it cannot tell an
// empty list from a slow broker, and fails. A list that stalls or does not
// end in time is an error, never a short list.
//
// A read that lacks per-ban states the manifest announces (a clustered
// broker's node that lags or lost one) is partial, as the bridge judges
// it (internal/listread): a ban missing there would show as lifted, or at
// an older version. collectState returns the bans read with an error that
// wraps errPartial. It also says whether the keeper record says the list
// is kept as chunks.
func collectState(cl mqtt.Client, root string, warn io.Writer, tm retained.Timing) ([]ban, bool, error) {
	// A keeper cutting the list while it is read makes the read stale: it
	// is read again (a burst is cut every second or so), a few times. So
	// is a read short of the per-ban states announced: a state made or
	// lifted during the read does that too, and the keeper announces the
	// states anew within a second or two.
	for try := 1; ; try++ {
		bans, v2, err := readState(cl, root, warn, tm)
		switch {
		case try == 5:
		case errors.Is(err, errRewritten):
			continue
		case errors.Is(err, errDeltas):
			time.Sleep(deltasAgain)
			continue
		}
		return bans, v2, err
	}
}

var (
	errRewritten = errors.New("the list's chunks were rewritten while they were read: run again")
	errPartial   = errors.New("the broker served the list only in part")
	errDeltas    = fmt.Errorf("%w: it lacks per-ban states its manifest announces", errPartial)
)

// deltasAgain is how long collectState waits to read the list again when
// the per-ban states read are not those announced: the keeper announces
// them anew within a second or two of a change.
const deltasAgain = 1500 * time.Millisecond

// readState is collectState, and whether the keeper record says the list
// is kept as chunks (a keeper of this release keeps it).
func readState(cl mqtt.Client, root string, warn io.Writer, tm retained.Timing) ([]ban, bool, error) {
	r := &stateReader{root: root, got: listread.List{}}
	r.chunks = listread.New(root, func(e wire.Entry) { r.got.Put(e.Prefix, e.State) })
	opts := cl.OptionsReader()
	marker := wire.MarkerTopic(opts.ClientID())
	// State at QoS 0, as the bridge reads it: at QoS 1 a broker holds back
	// what exceeds its in-flight window. The compact list (manifest and
	// chunks, docs/compact-list.md) and the keeper record in the same
	// SUBSCRIBE, as the bridge reads them.
	rd, err := retained.SubscribeAll(cl, map[string]byte{wire.StateFilter(root): 0, wire.ManifestTopic(root): 1,
		wire.ChunksFilter(root): 1, wire.RecordTopic(root): 1}, marker, r.onState)
	if err != nil {
		return nil, false, err
	}
	if !rd.Marked {
		fmt.Fprintf(warn, "vallum list: this login may not use %s, so the list ends at the first pause of %s (a slow broker could make it early)\n", marker, tm.Quiet)
	}
	if err := rd.Wait(tm); err != nil {
		return nil, false, r.failed(err, tm)
	}
	err = r.whole(tm.Quiet * 5)
	if errors.Is(err, errRewritten) {
		return nil, false, err
	}
	if err == nil {
		err = r.deltasWhole()
	}
	bans := r.bans()
	r.mu.Lock()
	defer r.mu.Unlock()
	return bans, r.v2, err
}

// deltasWhole says whether the per-ban states read are those the manifest
// announces (see collectState), once the chunks are read whole.
func (r *stateReader) deltasWhole() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.chunks.Status()
	if !st.Manifest || !st.Complete {
		return nil
	}
	if why := st.DeltasWhy(st.StateSum(r.got, r.states)); why != "" {
		return fmt.Errorf("list %s: %w: %s", r.root, errDeltas, why)
	}
	return nil
}

// stateReader gathers the list as paho delivers it: chunks and per-ban
// state merged last writer wins (internal/listread, as the bridge reads).
type stateReader struct {
	root string

	mu     sync.Mutex
	got    listread.List
	chunks *listread.Reader
	v2     bool // the keeper record says the list is kept as chunks
	// deleted: empty states read, applied by bans unless v2
	deleted map[netip.Prefix]bool
	states  map[netip.Prefix]int64 // the per-ban states read, by version (deltasWhole)
	bad     error                  // the first chunk refused
}

func (r *stateReader) onState(_ mqtt.Client, m mqtt.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	switch topic := m.Topic(); {
	case topic == wire.ManifestTopic(r.root):
		err = r.chunks.Manifest(m.Payload())
	case strings.HasPrefix(topic, wire.ChunkPrefix):
		err = r.chunks.Chunk(topic, m.Payload())
	case topic == wire.RecordTopic(r.root):
		rec, rerr := wire.DecodeRecord(m.Payload())
		r.v2 = rerr == nil && wire.IsEpochV2(rec.Epoch)
	default:
		r.state(topic, m.Payload())
	}
	if err != nil && r.bad == nil {
		r.bad = err
	}
}

func (r *stateReader) state(topic string, payload []byte) {
	t, err := wire.ParseTopic(r.root, topic)
	if err != nil || t.Kind != wire.KindState {
		return
	}
	st, err := wire.DecodeState(payload)
	if err == nil && len(payload) > 0 {
		r.got.Put(t.Prefix, st)
		delete(r.deleted, t.Prefix)
		if r.states == nil {
			r.states = map[netip.Prefix]int64{}
		}
		r.states[t.Prefix] = st.At.UnixMilli()
		return
	}
	delete(r.states, t.Prefix)
	// Decided at the end (bans): on a list kept as chunks (a v2 record)
	// an empty state is the keeper deleting a state its new cut folded
	// in, not an unban, as the bridge reads it. The record may come after
	// such a live deletion (paho orders a SUBSCRIBE's filters at random),
	// so none is applied before the whole list is read: taken as unbans,
	// a list read during a cut printed 81,538 of 100,000. An unban there
	// rewrites its chunk.
	if r.deleted == nil {
		r.deleted = map[netip.Prefix]bool{}
	}
	r.deleted[t.Prefix] = true
}

// whole waits up to d for the chunks the manifest names that have not
// come (a keeper rewriting them names the new ones in a moment), and says
// why the list is partial when they do not come: never a short list.
func (r *stateReader) whole(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		r.mu.Lock()
		st, v2, bad := r.chunks.Status(), r.v2, r.bad
		r.mu.Unlock()
		switch {
		case st.Stale:
			return fmt.Errorf("list %s: %w", r.root, errRewritten)
		case st.Complete && (st.Manifest || !v2):
			return nil
		case time.Now().After(deadline) && !st.Manifest:
			return fmt.Errorf("list %s: the keeper record says the list is kept as chunks, and the broker sent no manifest (may this login read %s?)", r.root, wire.ManifestTopic(r.root))
		case time.Now().After(deadline):
			if bad != nil {
				return fmt.Errorf("list %s: %w: %s; %v", r.root, errPartial, st.Why, bad)
			}
			return fmt.Errorf("list %s: %w: %s", r.root, errPartial, st.Why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// failed says why the list did not come to its end (stop: one of
// retained's errors).
// One Errorf with indexed arguments: each call costs bytes on the routers.
func (r *stateReader) failed(stop error, tm retained.Timing) error {
	r.mu.Lock()
	n := len(r.got)
	r.mu.Unlock()
	d, format := tm.Stall, "list %[1]s: the broker sent nothing for %[2]s and not the end of the list (%[3]d bans so far)"
	switch stop {
	case retained.TimedOut:
		d, format = tm.Limit, "list %[1]s: not complete after %[2]s (%[3]d bans so far): the broker is too slow or too loaded"
	case retained.Closed:
		format = "list %[1]s: the broker closed the connection after %[3]d bans"
	case retained.Empty:
		format = "list %[1]s: no ban came in %[2]s, and this login may not use a sync marker to tell an empty list from a slow broker: use a host or admin login"
	}
	return fmt.Errorf(format, r.root, d, n)
}

// bans returns the bans read, by address.
func (r *stateReader) bans() []ban {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.deleted {
		if !r.v2 {
			delete(r.got, p)
		}
	}
	bans := make([]ban, 0, len(r.got))
	for p, s := range r.got {
		bans = append(bans, ban{p, s})
	}
	sort.Slice(bans, func(i, j int) bool { return bans[i].prefix.Addr().Less(bans[j].prefix.Addr()) })
	return bans
}

func printBans(w io.Writer, bans []ban, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tEXPIRES\tLEFT\tREASON\tORIGIN\tBANNED\tCOUNT")
	n := 0
	for _, b := range bans {
		left, active := b.state.Remaining(now)
		if !active {
			continue
		}
		exp, leftText := "never", "-"
		if !b.state.Expires.IsZero() {
			exp, leftText = b.state.Expires.Local().Format(time.DateTime), (time.Duration(left) * time.Second).String()
		}
		count := "-" // the keeper's escalation counts the address's bans
		if b.state.Count > 0 {
			count = strconv.Itoa(b.state.Count)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", wire.FormatPrefix(b.prefix), exp, leftText,
			orDash(b.state.Reason), orDash(b.state.Origin), b.state.At.Local().Format(time.DateTime), count)
		n++
	}
	tw.Flush()
	fmt.Fprintf(w, "%d active bans\n", n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
