package main

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"github.com/vallum/vallum/bridge"
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
	cl, err := c.dial("list")
	if err != nil {
		return err
	}
	defer cl.Disconnect(250)
	bans, err := collectState(cl, l.Root, cmd.ErrOrStderr(), listTimes)
	if err != nil {
		return err
	}
	printBans(cmd.OutOrStdout(), bans, time.Now())
	return nil
}

type ban struct {
	prefix netip.Prefix
	state  wire.State
}

// listTiming bounds the wait for the retained bans.
type listTiming struct {
	stall time.Duration // no message at all for this long: fail
	quiet time.Duration // without a marker: a pause this long ends the list
	limit time.Duration // the whole read
}

// listTimes: mochi takes over a second to start sending 100,000 retained
// bans here, and sends them in about two (ten times that on a loaded
// machine); a broker that sends nothing for a minute is not sending the list.
var listTimes = listTiming{stall: time.Minute, quiet: 2 * time.Second, limit: 10 * time.Minute}

// collectState reads every retained ban of the list. The broker sends them
// as the subscription is made; to know that all have come, collectState
// then publishes a marker to itself on vallum/sync/CLIENT_ID and waits for
// it: a broker delivers one client's messages in order, so every ban sent
// before the marker has arrived when it does. A login that may not use a
// marker (a reporter) gets the bans that come until they pause, and a
// warning saying so; when none comes at all it cannot tell an empty list
// from a slow broker, and fails. A list that stalls or does not end in time
// is an error, never a short list.
func collectState(cl mqtt.Client, root string, warn io.Writer, tm listTiming) ([]ban, error) {
	r := &stateReader{root: root, got: map[netip.Prefix]wire.State{}}
	opts := cl.OptionsReader()
	marker := wire.MarkerTopic(opts.ClientID())
	back := make(chan struct{}, 1)
	withMarker := subscribed(cl.Subscribe(marker, 1, func(mqtt.Client, mqtt.Message) {
		select {
		case back <- struct{}{}:
		default:
		}
	}))
	// State at QoS 0, as the bridge reads it: at QoS 1 a broker holds back
	// what exceeds its in-flight window.
	if err := wait(cl.Subscribe(wire.StateFilter(root), 0, r.onState), "subscribe"); err != nil {
		return nil, err
	}
	r.subscribed() // the bans come after the SUBACK: count from here
	if withMarker {
		// Its PUBACK comes after the flood of bans, which may take long:
		// what counts is the marker coming back (or the connection lost).
		cl.Publish(marker, 1, false, "list")
	} else {
		back = nil
		fmt.Fprintf(warn, "vallum list: this login may not use %s, so the list ends at the first pause of %s (a slow broker could make it early)\n", marker, tm.quiet)
	}
	if err := r.waitEnd(cl, back, tm); err != nil {
		return nil, err
	}
	return r.bans(), nil
}

// stateReader gathers the retained bans as paho delivers them.
type stateReader struct {
	root string

	mu    sync.Mutex
	got   map[netip.Prefix]wire.State
	since time.Time // the SUBACK
	last  time.Time // the latest ban; zero until one comes
}

func (r *stateReader) onState(_ mqtt.Client, m mqtt.Message) {
	t, err := wire.ParseTopic(r.root, m.Topic())
	if err != nil || t.Kind != wire.KindState {
		return
	}
	st, err := wire.DecodeState(m.Payload())
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = time.Now()
	if err == nil && len(m.Payload()) > 0 {
		r.got[t.Prefix] = st
	} else {
		delete(r.got, t.Prefix)
	}
}

func (r *stateReader) subscribed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.since = time.Now()
}

// progress returns the bans so far, and how long the broker has sent none
// (since the SUBACK when none came yet).
func (r *stateReader) progress() (n int, idle time.Duration, some bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last.IsZero() {
		return 0, time.Since(r.since), false
	}
	return len(r.got), time.Since(r.last), true
}

// waitEnd waits for the marker to come back, or without one (back nil) for
// a pause in the bans.
func (r *stateReader) waitEnd(cl mqtt.Client, back <-chan struct{}, tm listTiming) error {
	deadline := time.After(tm.limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-back:
			return nil
		case <-deadline:
			n, _, _ := r.progress()
			return fmt.Errorf("list %s: not complete after %s (%d bans so far): the broker is too slow or too loaded", r.root, tm.limit, n)
		case <-tick.C:
		}
		n, idle, some := r.progress()
		switch {
		case !cl.IsConnectionOpen():
			return fmt.Errorf("list %s: the broker closed the connection after %d bans", r.root, n)
		case back == nil && some && idle > tm.quiet:
			return nil
		case back == nil && idle > tm.stall:
			return fmt.Errorf("list %s: no ban came in %s, and this login may not use a sync marker to tell an empty list from a slow broker: use a host or admin login", r.root, tm.stall)
		case idle > tm.stall:
			return fmt.Errorf("list %s: the broker sent nothing for %s and not the end of the list (%d bans so far)", r.root, tm.stall, n)
		}
	}
}

// bans returns the bans read, by address.
func (r *stateReader) bans() []ban {
	r.mu.Lock()
	defer r.mu.Unlock()
	bans := make([]ban, 0, len(r.got))
	for p, s := range r.got {
		bans = append(bans, ban{p, s})
	}
	sort.Slice(bans, func(i, j int) bool { return bans[i].prefix.Addr().Less(bans[j].prefix.Addr()) })
	return bans
}

// subscribed reports whether the broker granted a subscription.
func subscribed(tok mqtt.Token) bool {
	if wait(tok, "subscribe") != nil {
		return false
	}
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return false
	}
	for _, code := range st.Result() {
		if code == 0x80 {
			return false
		}
	}
	return true
}

func printBans(w io.Writer, bans []ban, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tEXPIRES\tLEFT\tREASON\tORIGIN\tBANNED")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", wire.FormatPrefix(b.prefix), exp, leftText,
			orDash(b.state.Reason), orDash(b.state.Origin), b.state.At.Local().Format(time.DateTime))
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
