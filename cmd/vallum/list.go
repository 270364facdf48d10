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

// listQuiet is how long the retained messages must pause before the list is
// taken as complete; brokers send them back to back on subscribe.
const listQuiet = 500 * time.Millisecond

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
	bans, err := collectState(cl, l.Root)
	if err != nil {
		return err
	}
	printBans(cmd.OutOrStdout(), bans, time.Now())
	return nil
}

type ban struct {
	prefix netip.Prefix
	state  bridge.State
}

// collectState subscribes to the list's state and gathers the retained
// bans until they pause for listQuiet (at most 60 s).
func collectState(cl mqtt.Client, root string) ([]ban, error) {
	var mu sync.Mutex
	got := map[netip.Prefix]bridge.State{}
	last := time.Now()
	handler := func(_ mqtt.Client, m mqtt.Message) {
		t, err := bridge.ParseTopic(root, m.Topic())
		if err != nil || t.Kind != bridge.KindState {
			return
		}
		st, err := bridge.DecodeState(m.Payload())
		mu.Lock()
		defer mu.Unlock()
		last = time.Now()
		if err == nil && len(m.Payload()) > 0 {
			got[t.Prefix] = st
		} else {
			delete(got, t.Prefix)
		}
	}
	if err := wait(cl.Subscribe(root+"/ban/#", 1, handler), "subscribe"); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		quiet := time.Since(last) > listQuiet
		mu.Unlock()
		if quiet {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	bans := make([]ban, 0, len(got))
	for p, s := range got {
		bans = append(bans, ban{p, s})
	}
	sort.Slice(bans, func(i, j int) bool { return bans[i].prefix.Addr().Less(bans[j].prefix.Addr()) })
	return bans, nil
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", bridge.FormatPrefix(b.prefix), exp, leftText,
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
