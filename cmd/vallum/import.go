//go:build !vallum_small && !vallum_noimport

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/feed"
	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/wire"
)

// importBuilt: the router builds leave `vallum import` out (import_small.go;
// tags vallum_small, and vallum_noimport on arm64): it costs 78 KB on mips
// and 131 KB on arm64, either over 10 MB, and a router is not where feeds
// are imported from.
const importBuilt = true

// Limits of a feed fetched over HTTP(S).
const fetchTimeout = 2 * time.Minute

var fetchMax int64 = 256 << 20 // bytes: a 1,000,000-entry netset is about 15 MB (tests lower it)

func newImportCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "import LIST FILE|URL",
		Short: "Ban every address of a blocklist feed on every host of a list (FireHOL netset, plain, Spamhaus DROP JSON, DynFW CSV)",
		Example: `  vallum import blacklist /etc/firehol/firehol_level1.netset --sync
  vallum import blacklist https://www.spamhaus.org/drop/drop_v4.json --timeout 2d --sync
  vallum import blacklist - --name mine < list.txt`,
		Args: cobra.ExactArgs(2),
		RunE: importCmd,
	}
	connFlags(c.Flags())
	f := c.Flags()
	f.String("format", string(feed.Auto), "feed format: auto, plain, netset, spamhaus-json or dynfw-csv")
	f.String("timeout", "0", "how long each ban lasts: seconds or a duration (3600, 90m, 1h, 7d); 0 is permanent")
	f.String("reason", "", "reason of the bans (default: the feed's name)")
	f.String("name", "", "the feed's name; its bans have origin import:NAME (default: the file's base name)")
	f.Bool("sync", false, "the feed is a set: lift this feed's earlier bans that are no longer in it")
	f.Bool("strict", false, "exit 1 when an entry is refused (the others are still imported)")
	f.Bool("dry-run", false, "print what would be banned and lifted; publish nothing")
	f.StringArray("allow", nil, "CIDR never banned, repeatable (as the daemon's --allow)")
	f.Int("widest-v4", guard.DefaultWidest4, "broadest IPv4 prefix length that may be banned")
	f.Int("widest-v6", guard.DefaultWidest6, "broadest IPv6 prefix length that may be banned")
	f.Int("max-payload", bridge.DefaultMaxPayload, "largest event message in bytes (the bridges' --max-payload)")
	return c
}

// errRefused makes importCmd exit 1 under --strict; the import itself
// went through.
var errRefused = errors.New("entries refused (--strict)")

func importCmd(cmd *cobra.Command, args []string) error {
	c, _, err := setup(cmd)
	if err != nil {
		return err
	}
	l, err := bridge.ParseList(args[0])
	if err != nil {
		return err
	}
	imp, err := newImporter(cmd, c, args[1])
	if err != nil {
		return err
	}
	res, err := readFeed(cmd.Context(), args[1], feed.Format(flagString(cmd, "format")), cmd.InOrStdin())
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	var cl mqtt.Client
	if cl, err = c.dial("import"); err != nil {
		return err
	}
	defer cl.Disconnect(250)
	imp.guard.SetDynamic(sharedAllow(cl, cmd.ErrOrStderr()))
	refused := imp.check(&res)
	// On a list read in part, a ban whose per-ban state the broker did
	// not serve would be banned again over another origin's, or (--sync)
	// lifted from an older version the chunks hold: nothing is published.
	bans, kept, err := collectState(cl, l.Root, cmd.ErrOrStderr(), listTimes)
	if errors.Is(err, errPartial) {
		return fmt.Errorf("%w; nothing published: run again", err)
	}
	if err != nil {
		return err
	}
	// Or every ban published below comes back, to be kept for nothing
	// (200 MB for 1,000,000) and sent by the broker once more; and every
	// cut the keeper makes of the import as it comes (49 MB of chunks a
	// cut at 1,000,000), which this client does not read: the hub's
	// writes to it timed out (45 s, 1.5 times its keepalive) and closed
	// the connection mid-import (e2e TestImportMillion, 3 runs of 14).
	unsub := cl.Unsubscribe(wire.StateFilter(l.Root), wire.ManifestTopic(l.Root), wire.ChunksFilter(l.Root), wire.RecordTopic(l.Root))
	if err := wait(unsub, "unsubscribe"); err != nil {
		return err
	}
	sync, _ := cmd.Flags().GetBool("sync")
	pl := feed.Diff(res.Prefixes, banSeq(bans), imp.origin, imp.ttl, sync, time.Now())
	fmt.Fprintf(out, "%s: %s, %d entries (%d repeated), %d refused; %d to ban, %d already banned, %d to lift\n",
		imp.origin, res.Format, len(res.Prefixes)+refused, res.Repeats, len(res.Refused), len(pl.Add), pl.Kept, len(pl.Del))
	if sync && len(res.Prefixes) == 0 && len(pl.Del) > 0 {
		// An empty file is more often a failed download than a feed
		// that lost every entry.
		return fmt.Errorf("feed %s has no entries: --sync would lift all %d bans of %s; refused", wire.Clip(args[1]), len(pl.Del), imp.origin)
	}
	if dry, _ := cmd.Flags().GetBool("dry-run"); dry {
		return imp.report(out, res)
	}
	p := &publisher{cl: cl, root: l.Root, max: c.MaxPayload, states: !kept}
	if !kept {
		fmt.Fprintf(cmd.ErrOrStderr(), "vallum import: no keeper record of %s in the v2 spelling (no keeper, or one of the previous release, or --legacy-state): one retained state per ban, as vallum ban sends\n", l.Root)
	}
	if err := p.send(pl.Add, bridge.Add, imp, imp.ttl); err != nil {
		return publishHint(err, cl, l.Root)
	}
	if err := p.send(pl.Del, bridge.Del, imp, 0); err != nil {
		return publishHint(err, cl, l.Root)
	}
	fmt.Fprintf(out, "published %d bans and %d unbans in %d event messages\n", len(pl.Add), len(pl.Del), p.events)
	return imp.report(out, res)
}

// importer holds what every entry of one import shares.
type importer struct {
	origin string // import:NAME, the mark of this feed's bans
	reason string
	ttl    wire.Timeout
	guard  *guard.Guard
	strict bool
}

func newImporter(cmd *cobra.Command, c config, src string) (*importer, error) {
	name := flagString(cmd, "name")
	if name == "" {
		name = path.Base(src)
		if i := strings.IndexAny(name, "?#"); i >= 0 {
			name = name[:i]
		}
	}
	if name == "" || name == "-" || name == "." || name == "/" {
		return nil, errors.New("give the feed a --name: its bans are marked import:NAME")
	}
	if len(name) > 50 { // the state keeps 64 bytes of an origin: import:NAME must fit whole
		return nil, fmt.Errorf("feed name %q: longer than 50 bytes, give a shorter --name", wire.Clip(name))
	}
	ttl, err := parseTimeout(flagString(cmd, "timeout"))
	if err != nil {
		return nil, err
	}
	var allow []netip.Prefix
	for _, a := range c.Allow {
		p, err := wire.ParsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("--allow %q: %w", a, err)
		}
		allow = append(allow, p)
	}
	for _, h := range c.brokerHosts() { // as the daemon: never ban the broker
		if a, err := netip.ParseAddr(h); err == nil {
			allow = append(allow, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	if c.MaxPayload < minPayload {
		return nil, fmt.Errorf("--max-payload %d: too small for the meta line and one line (%d bytes)", c.MaxPayload, minPayload)
	}
	imp := &importer{origin: wire.Clip("import:" + name), reason: flagString(cmd, "reason"), ttl: ttl,
		guard: guard.New(allow, c.WidestV4, c.WidestV6)}
	imp.strict, _ = cmd.Flags().GetBool("strict")
	if imp.reason == "" {
		imp.reason = name
	}
	imp.reason = wire.Clip(imp.reason)
	return imp, nil
}

// check drops from res what any bridge would refuse (too broad, covering
// an allowlisted address) and adds it to res.Refused. It returns how many.
func (imp *importer) check(res *feed.Result) int {
	kept, lines := res.Prefixes[:0], res.Lines[:0]
	n := 0
	for i, p := range res.Prefixes {
		if err := imp.guard.Check(p); err != nil {
			res.Refused = append(res.Refused, &wire.LineError{N: res.Lines[i], Text: wire.FormatPrefix(p), Err: err})
			n++
			continue
		}
		kept, lines = append(kept, p), append(lines, res.Lines[i])
	}
	res.Prefixes, res.Lines = kept, lines
	slices.SortStableFunc(res.Refused, func(a, b *wire.LineError) int { return a.N - b.N })
	return n
}

// meta is the meta line's content of this import's events: the keeper
// marks each of their bans so.
func (imp *importer) meta() wire.Meta { return wire.Meta{Reason: imp.reason, Origin: imp.origin} }

// state is the retained state of each ban of this import, made now, for
// a list without a keeper of this release.
func (imp *importer) state() []byte {
	st := wire.State{At: time.Now(), Reason: imp.reason, Origin: imp.origin}
	if imp.ttl > 0 {
		st.Expires = st.At.Add(time.Duration(imp.ttl) * time.Second)
	}
	return wire.EncodeState(st)
}

// report prints the refused entries (the first ten, then how many more).
func (imp *importer) report(w io.Writer, res feed.Result) error {
	const show = 10
	for i, e := range res.Refused {
		if i == show {
			fmt.Fprintf(w, "refused: %d more\n", len(res.Refused)-show)
			break
		}
		fmt.Fprintf(w, "refused: %v\n", e)
	}
	if len(res.Refused) > 0 && imp.strict {
		return errRefused
	}
	return nil
}

// sharedAllow reads the fleet's shared allowlist (`vallum allow`), so that
// an entry it covers is refused and reported here rather than dropped in
// silence by the keeper and the hosts, which refuse it too. A login that
// may not read it imports without it, warned.
func sharedAllow(cl mqtt.Client, warn io.Writer) []netip.Prefix {
	r, err := readAllow(cl, wire.AllowFilter) // allow.go
	if err != nil {
		fmt.Fprintf(warn, "vallum import: the shared allowlist was not read (%v): the keeper and the hosts still refuse what it covers\n", err)
		return nil
	}
	cl.Unsubscribe(wire.AllowFilter)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]netip.Prefix, 0, len(r.got))
	for p := range r.got {
		out = append(out, p)
	}
	return out
}

// banSeq yields the bans read, for feed.Diff.
func banSeq(bans []ban) iter.Seq2[netip.Prefix, wire.State] {
	return func(yield func(netip.Prefix, wire.State) bool) {
		for _, b := range bans {
			if !yield(b.prefix, b.state) {
				return
			}
		}
	}
}

func publishHint(err error, cl mqtt.Client, root string) error {
	if !cl.IsConnected() {
		return fmt.Errorf("%w (the broker closed the connection: may this user publish to %s/...? a host-only user may not ban)", err, root)
	}
	return err
}

// readFeed opens a file, stdin ("-") or an http(s) URL and parses it.
func readFeed(ctx context.Context, src string, f feed.Format, stdin io.Reader) (feed.Result, error) {
	var r io.Reader
	switch {
	case src == "-":
		r = stdin
	case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
		body, err := fetch(ctx, src)
		if err != nil {
			return feed.Result{}, err
		}
		defer body.Close()
		r = body
	default:
		fh, err := os.Open(src)
		if err != nil {
			return feed.Result{}, err
		}
		defer fh.Close()
		r = fh
	}
	res, err := feed.Parse(r, f)
	if err != nil {
		return res, fmt.Errorf("feed %s: %w", wire.Clip(src), err)
	}
	return res, nil
}

// fetch GETs url within fetchTimeout and fetchMax bytes, so that a feed
// that never ends can fill neither the time nor the memory.
func fetch(ctx context.Context, url string) (io.ReadCloser, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	b, err := feed.Fetch(ctx, url, fetchMax, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	return &cancelBody{b, cancel}, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error { b.cancel(); return b.ReadCloser.Close() }

// publisher sends bans as event messages of many lines, of at most max
// bytes, each opening with the feed's meta line (wire.MetaLine). Hosts
// online apply the events; the list's keeper takes a message of many
// lines (a burst, internal/keeper burst.go) straight into its next cut,
// with the feed's reason and origin, and makes no retained state per ban:
// one retained message per ban costs the broker more than the ban (NATS
// took 89 to 185 s to a host for 1,000,000). Unbans go as events too: the
// keeper deletes a per-ban state and rewrites the chunk that holds the ban.
// With states (a list whose record is not v2: no keeper of this release),
// each ban's retained state (empty for an unban) goes first, as `vallum
// ban` and `vallum unban` send it.
type publisher struct {
	cl     mqtt.Client
	root   string
	max    int
	states bool
	events int
}

// minPayload fits a meta line of the longest reason and origin (clipped
// to 67 bytes each, about 840 bytes escaped) and a line.
const minPayload = 1024

// inFlight bounds the QoS 1 publishes not yet acknowledged.
const inFlight = 1000

// send publishes prefixes: bans with the import's meta line, or unbans.
func (p *publisher) send(prefixes []netip.Prefix, action bridge.Action, imp *importer, ttl wire.Timeout) error {
	tail, head, state := "", "", []byte(nil)
	if action == bridge.Add {
		tail, head = " timeout "+strconv.FormatInt(int64(ttl), 10), wire.MetaLine(imp.meta())
	}
	if action == bridge.Add && p.states {
		state = imp.state()
	}
	w := newWindow()
	var ev strings.Builder
	ev.WriteString(head)
	for _, pre := range prefixes {
		if p.states {
			if err := w.add(p.cl.Publish(wire.StateTopic(p.root, pre), 1, true, state)); err != nil {
				w.close()
				return err
			}
		}
		line := wire.FormatPrefix(pre) + tail + "\n"
		if ev.Len() > len(head) && ev.Len()+len(line) > p.max {
			if err := w.add(p.cl.Publish(wire.EventTopic(p.root, action.Kind()), 1, false, ev.String())); err != nil {
				w.close()
				return err
			}
			p.events++
			ev.Reset()
			ev.WriteString(head)
		}
		ev.WriteString(line)
	}
	if ev.Len() > len(head) {
		w.add(p.cl.Publish(wire.EventTopic(p.root, action.Kind()), 1, false, ev.String()))
		p.events++
	}
	return w.close()
}

// ackWait bounds the wait for one publish's acknowledgement. An embedded
// hub acknowledges the next message of a client only once its keeper took
// the last one, which waits while the keeper reads its list for a cut: a
// 1,000,000-ban import into a hub on two busy cores (load average 15 to
// 22) waited over wait's 15 s for one.
const ackWait = 2 * time.Minute

func waitAck(t mqtt.Token) error {
	if !t.WaitTimeout(ackWait) {
		return errors.New("publish: not acknowledged within " + ackWait.String())
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// window keeps at most inFlight publishes unacknowledged: a goroutine
// waits for them in order while the next ones go out (waiting for a whole
// batch at a time halved the rate).
type window struct {
	toks chan mqtt.Token
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func newWindow() *window {
	w := &window{toks: make(chan mqtt.Token, inFlight), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for t := range w.toks {
			if w.failed() != nil {
				continue // drain: the sender stops at its next add
			}
			if err := waitAck(t); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// add queues t, blocking while inFlight are unacknowledged; it returns
// the first publish error so far.
func (w *window) add(t mqtt.Token) error {
	w.toks <- t
	return w.failed()
}

func (w *window) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// close waits for every publish and returns the first error.
func (w *window) close() error {
	close(w.toks)
	<-w.done
	return w.err
}
