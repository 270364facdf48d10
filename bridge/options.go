package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/wire"
)

// List is one logical ban list: a topic root and the kernel sets its IPv4
// and IPv6 addresses go to.
type List struct {
	Root string // topic root, e.g. "blacklist" or "site1/blacklist"
	Set4 string // default: the last level of Root
	Set6 string // default: Set4 + "6"
}

// ParseList parses the -t syntax ROOT[=SET4[,SET6]].
func ParseList(s string) (List, error) {
	root, sets, hasSets := strings.Cut(s, "=")
	l := List{Root: root}
	if hasSets {
		l.Set4, l.Set6, _ = strings.Cut(sets, ",")
		if l.Set4 == "" {
			return l, fmt.Errorf("topic %q: empty set name after =", s)
		}
	}
	l.ensureDefaults()
	return l, l.validate()
}

func (l *List) ensureDefaults() {
	if l.Set4 == "" {
		l.Set4 = l.Root[strings.LastIndexByte(l.Root, '/')+1:]
	}
	if l.Set6 == "" {
		l.Set6 = l.Set4 + "6"
	}
}

func (l List) validate() error {
	if err := wire.ValidRoot(l.Root); err != nil {
		return err
	}
	return errors.Join(ValidSetName(l.Set4), ValidSetName(l.Set6))
}

// ValidSetName reports why the kernel would not take name as a set name.
// ipset names are at most 31 bytes (IPSET_MAXNAMELEN 32 with the NUL);
// nftables allows more, so the ipset limit is the common one.
func ValidSetName(name string) error {
	switch {
	case name == "":
		return errors.New("empty set name")
	case len(name) > 31:
		return fmt.Errorf("set name %q is longer than 31 bytes", name)
	case strings.ContainsFunc(name, func(r rune) bool {
		return !(r == '_' || r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}):
		return fmt.Errorf("set name %q: use letters, digits, '_', '-' and '.' only", name)
	}
	return nil
}

// DefaultMaxPayload bounds one message: room for about 60,000 addresses.
const DefaultMaxPayload = 1 << 20

// Options configure a Bridge. Zero values get the defaults noted.
type Options struct {
	Lists    []List
	Broker   string      // broker URL: tcp://host:1883, ssl://, ws://, wss://
	Brokers  []string    // several brokers (a cluster), tried in turn; Broker, if set, comes first
	ClientID string      // stable per host; required
	Username string      // optional
	Password string      // optional
	TLS      *tls.Config // for ssl:// and wss://
	QoS      byte        // subscription QoS 0, 1 or 2 (the CLI's default is 1)

	Create  bool   // create missing sets
	MaxElem uint32 // capacity of created sets; 0: DefaultMaxElem

	MaxPayload int          // bytes; larger messages are refused whole; default 1 MiB
	MaxBatch   int          // ops applied in one backend call; default 10,000
	QueueLen   int          // messages waiting for the worker; default 1,024
	MaxPending int64        // decoded ops waiting for the kernel; default 100,000
	Guard      *guard.Guard // the allowlist and prefix limits every add passes; nil: guard.New(nil, 0, 0)

	// WatchEvery is how often the sets (and Rules) are checked, to put
	// them back after a firewall reload; default DefaultWatchEvery,
	// negative: never.
	WatchEvery time.Duration
	// Rules, when set, puts back the firewall rules that use the sets if
	// they are missing. It runs after the sets are checked: at every watch,
	// on Resync, and after a set was created again.
	Rules func(ctx context.Context) error

	// Banned, when set, is called on the apply worker after each batch,
	// with the prefixes that the batch added to the sets of the lists
	// whose roots KillLists names (refused adds left out). It must not
	// block: it hands them to whatever cuts their connections.
	Banned    func([]netip.Prefix)
	KillLists []string
	kill      map[string]bool // the sets of KillLists

	// ConnectTimeout bounds one connection attempt; default 10 s.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
	Stats          *Stats // counters for metrics; nil: a private one

	// SyncTimeout is how long a sync may receive nothing before the bridge
	// drops the connection and connects to the next broker; default
	// DefaultSyncTimeout.
	SyncTimeout time.Duration
	// ConfirmSync, when set, syncs once more this long after the first
	// sync of every connection: a clustered broker's node may serve a stale
	// copy of the state just after a failover. 0: never.
	ConfirmSync time.Duration

	// EpochFile keeps the epoch of each list's keeper record at the last
	// sync, so that a restart still tells a list the broker lost from an
	// unban of everything (epoch.go); "": kept in memory only.
	EpochFile string
	// AllowFile keeps the shared allowlist as the bridge last read it
	// (allow.go), so that after a restart the bans it covers are refused
	// before the first sync; "": kept in memory only.
	AllowFile string

	// Presence is the host's retained status and will (presence.go).
	Presence Presence

	// eventSettle is how long an event's add is left alone by a sync that
	// does not find it in the list: its state may not be published yet.
	// Default recentFor; tests shorten it.
	eventSettle time.Duration
}

func (o *Options) ensureDefaults() {
	if o.MaxElem == 0 {
		o.MaxElem = DefaultMaxElem
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 10000
	}
	if o.MaxPending == 0 {
		o.MaxPending = 100000
	}
	if o.QueueLen == 0 {
		o.QueueLen = 1024
	}
	if o.WatchEvery == 0 {
		o.WatchEvery = DefaultWatchEvery
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.eventSettle == 0 {
		o.eventSettle = recentFor
	}
	if o.SyncTimeout == 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Guard == nil {
		o.Guard = guard.New(nil, 0, 0)
	}
	if o.Stats == nil {
		o.Stats = new(Stats)
	}
	for i := range o.Lists {
		o.Lists[i].ensureDefaults()
	}
	o.kill = killSets(o)
}

// Validate returns every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if len(o.Lists) == 0 {
		errs = append(errs, errors.New("no list topic: give at least one -t TOPIC"))
	}
	sets := map[string]string{}
	for _, l := range o.Lists {
		if err := l.validate(); err != nil {
			errs = append(errs, fmt.Errorf("topic %q: %w", l.Root, err))
		}
		for _, s := range []string{l.Set4, l.Set6} {
			if prev, dup := sets[s]; dup {
				errs = append(errs, fmt.Errorf("set %q is used by topics %q and %q", s, prev, l.Root))
			}
			sets[s] = l.Root
		}
	}
	if _, err := o.brokerURLs(); err != nil {
		errs = append(errs, err)
	}
	if o.ClientID == "" {
		errs = append(errs, errors.New("no client id"))
	}
	if o.QoS > 2 {
		errs = append(errs, fmt.Errorf("qos %d: must be 0, 1 or 2", o.QoS))
	}
	return errors.Join(errs...)
}
