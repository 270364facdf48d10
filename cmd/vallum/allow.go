//go:build !(vallum_small && (mips || mipsle))

package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/wire"
)

func newAllowCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "allow",
		Short: "Change or print the shared allowlist, which no host of the fleet ever bans (admins only may change it)",
		Args:  cobra.NoArgs,
	}
	add := &cobra.Command{
		Use:     "add ADDRESS[/PREFIX]",
		Short:   "Allow an address on every host: lifts the bans it covers and refuses every later one",
		Example: `  vallum -h hub.example -u admin allow add 198.51.100.0/24 --comment office`,
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return allowChange(cmd, args[0], true) },
	}
	add.Flags().String("comment", "", "why, such as office (at most 64 bytes)")
	del := &cobra.Command{
		Use:   "del ADDRESS[/PREFIX]",
		Short: "Delete an entry of the shared allowlist",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return allowChange(cmd, args[0], false) },
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Print the shared allowlist",
		Args:  cobra.NoArgs,
		RunE:  allowList,
	}
	for _, s := range []*cobra.Command{add, del, list} {
		connFlags(s.Flags())
	}
	c.AddCommand(add, del, list)
	return c
}

// allowWait bounds a read of the allowlist (it is small) and the wait for
// a change to come back.
const allowWait = 15 * time.Second

// allowChange publishes an entry of the allowlist (add) or its deletion,
// and waits for it to come back from the broker: a broker refuses an
// MQTT 3.1.1 publish by dropping it in silence (mosquitto, and the
// embedded broker), so only the echo tells that the broker took it.
func allowChange(cmd *cobra.Command, arg string, add bool) error {
	c, _, err := setup(cmd)
	if err != nil {
		return err
	}
	p, err := wire.ParsePrefix(arg)
	if err != nil {
		return err
	}
	var payload []byte // empty: the entry is deleted
	if add {
		if err := guard.New(nil, 0, 0).Check(p); errors.Is(err, guard.ErrTooBroad) {
			return fmt.Errorf("refusing to allow %s: %w", p, err)
		}
		comment := flagString(cmd, "comment")
		if len(comment) > 64 {
			return fmt.Errorf("--comment is %d bytes, at most 64", len(comment))
		}
		payload = wire.EncodeAllow(wire.Allow{At: time.Now(), Comment: comment, Origin: hostname()})
	}
	cl, err := c.dial("allow")
	if err != nil {
		return err
	}
	defer cl.Disconnect(250)
	topic := wire.AllowTopic(p)
	r, err := readAllow(cl, topic)
	if err != nil {
		return err
	}
	if _, ok := r.got[p]; !ok && !add {
		fmt.Fprintf(cmd.ErrOrStderr(), "vallum: %s is not on the shared allowlist; its deletion is sent anyway\n", wire.FormatPrefix(p))
	}
	if err := wait(cl.Publish(topic, 1, true, payload), "publish "+topic); err != nil {
		return fmt.Errorf("%w (only an admin login may change the shared allowlist)", err)
	}
	if !r.echoed(string(payload), allowWait) {
		return fmt.Errorf("the broker did not take %s: only an admin login may change the shared allowlist "+
			"(on mosquitto: topic readwrite %s for that user)", topic, wire.AllowFilter)
	}
	return nil
}

func allowList(cmd *cobra.Command, _ []string) error {
	c, _, err := setup(cmd)
	if err != nil {
		return err
	}
	cl, err := c.dial("allow")
	if err != nil {
		return err
	}
	defer cl.Disconnect(250)
	r, err := readAllow(cl, wire.AllowFilter)
	if err != nil {
		return err
	}
	printAllow(cmd.OutOrStdout(), r.got)
	return nil
}

// allowReader reads the allowlist, or one entry of it, as paho delivers it.
type allowReader struct {
	mu   sync.Mutex
	got  map[netip.Prefix]wire.Allow // after readAllow: what the broker holds
	live chan string                 // payloads that came after the read
	done bool
}

// readAllow subscribes to filter and reads what the broker holds to the
// end: a marker the client publishes to itself comes back after it (see
// internal/retained). The allowlist is read by admins and hosts only, who
// may use their marker.
func readAllow(cl mqtt.Client, filter string) (*allowReader, error) {
	r := &allowReader{got: map[netip.Prefix]wire.Allow{}, live: make(chan string, 16)}
	opts := cl.OptionsReader()
	marker := wire.MarkerTopic(opts.ClientID())
	back := make(chan struct{}, 1)
	tok := cl.Subscribe(marker, 1, func(mqtt.Client, mqtt.Message) {
		select {
		case back <- struct{}{}:
		default:
		}
	})
	if err := granted(tok, marker); err != nil {
		return nil, err
	}
	if err := granted(cl.Subscribe(filter, 1, r.onMessage), filter); err != nil {
		return nil, err
	}
	if err := wait(cl.Publish(marker, 1, false, "allow"), "publish "+marker); err != nil {
		return nil, err
	}
	select {
	case <-back:
	case <-time.After(allowWait):
		return nil, fmt.Errorf("the broker did not send the shared allowlist to its end in %s", allowWait)
	}
	r.mu.Lock()
	r.done = true
	r.mu.Unlock()
	return r, nil
}

// granted says why a subscription was refused, or nil.
func granted(tok mqtt.Token, filter string) error {
	if err := wait(tok, "subscribe "+filter); err != nil {
		return err
	}
	for _, code := range tok.(*mqtt.SubscribeToken).Result() {
		if code >= 0x80 {
			return fmt.Errorf("the broker refused this login the subscription to %s: the shared allowlist is read by admins and hosts, and changed by admins only", filter)
		}
	}
	return nil
}

func (r *allowReader) onMessage(_ mqtt.Client, m mqtt.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		select {
		case r.live <- string(m.Payload()):
		default:
		}
		return
	}
	p, err := wire.ParseAllowTopic(m.Topic())
	if err != nil {
		return
	}
	if a, err := wire.DecodeAllow(m.Payload()); err == nil && len(m.Payload()) > 0 {
		r.got[p] = a
	} else {
		delete(r.got, p)
	}
}

// echoed waits for payload to come back from the broker.
func (r *allowReader) echoed(payload string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case got := <-r.live:
			if got == payload {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

func printAllow(w io.Writer, got map[netip.Prefix]wire.Allow) {
	ps := make([]netip.Prefix, 0, len(got))
	for p := range got {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tCOMMENT\tORIGIN\tADDED")
	for _, p := range ps {
		a := got[p]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", wire.FormatPrefix(p), orDash(strings.TrimSpace(a.Comment)), orDash(a.Origin), a.At.Local().Format(time.DateTime))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d entries\n", len(ps))
}
