// Package keeper is the owner of a list's state: it turns the list's
// events (ROOT/add, ROOT/del, the bare ROOT) into retained state, expires
// bans, keeps the list's record (vallum/keeper/ROOT, with its epoch) and
// rebuilds a list the broker lost from its own copy. It knows no broker:
// an adapter feeds it what it reads (Retained, Settle, Message) and gives
// it a Sink to publish through. The embedded broker runs it inline
// (broker/keeper.go); `vallum keeper` runs it over an MQTT client.
package keeper

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/wire"
)

// Sink publishes the keeper's retained messages (QoS 1). An empty payload
// deletes the retained message. Retain may deliver the message back to the
// keeper (Message) before it returns: the keeper holds no lock across it.
type Sink interface {
	Retain(topic string, payload []byte) error
}

// RetainedReader is a Sink that hands back what the broker retains on a
// topic (the embedded broker: its own store, in memory). The keeper then
// holds no copy of a chunk once the broker holds it as the keeper wrote
// it, and reads it there when it needs it: a million bans are 23 MB of
// chunks, held once instead of twice.
type RetainedReader interface {
	RetainedPayload(topic string) ([]byte, bool)
}

// Limits are what the bridges refuse; the keeper refuses the same, so that
// nothing a bridge would refuse becomes state (which every host re-reads).
type Limits struct {
	MaxPayload int            // bytes per event message, refused whole above it; 0: DefaultMaxPayload
	MinBitsV4  int            // broadest IPv4 prefix length allowed; 0: guard.DefaultWidest4
	MinBitsV6  int            // broadest IPv6 prefix length allowed; 0: guard.DefaultWidest6
	Allow      []netip.Prefix // nothing covering one of these becomes state (the built-in ranges never do)
}

// DefaultMaxPayload is the bridge's default limit on one message.
const DefaultMaxPayload = 1 << 20

// Options configure a Keeper.
type Options struct {
	Roots []string // the lists kept
	Name  string   // the record's Keeper field: a host name, "hub"
	// Copy is the path of the keeper's own copy of its lists (an
	// internal/store log): every state it tracks and each list's epoch,
	// from which it rebuilds a list the broker lost. "": none (the
	// embedded broker's store already keeps them).
	Copy   string
	Limits Limits
	// LegacyState keeps per-ban state for every ban, the chunks
	// notwithstanding, so that hosts of the previous release (which read
	// only per-ban state) keep converging. Off, the record's epoch is in
	// the v2 spelling (wire.EpochV2), which those hosts refuse: they keep
	// their bans and log an ERROR at every sync.
	LegacyState bool
	// LegacyAuto, with LegacyState off: a list whose record is in the old
	// spelling already (a list of the previous release, or one kept with
	// LegacyState) keeps it, and per-ban state for every ban, rather than
	// being respelt v2; a new list begins v2. The hosts of the previous
	// release take the keeper's deletions after a cut for unbans: measured
	// with that release's binary, a host lost every ban to the first cut
	// of its upgraded hub (e2e TestPreviousReleaseHostV2). The default of
	// the daemon and `vallum keeper`; --legacy-state=false turns it off.
	LegacyAuto bool
	// CutAfter and CutEvery: a cut (cut.go) when more bans changed since
	// the last one than max(CutAfter, 1 % of the list), or CutEvery
	// passed with any change. 0: DefaultCutAfter, DefaultCutEvery.
	CutAfter int
	CutEvery time.Duration
	// BurstLines: an event message of at least this many add lines is a
	// burst (burst.go): its bans go to the next cut without a per-ban
	// state each. 0: DefaultBurstLines.
	BurstLines int
	// Flushed, when set, is told after each cut (or per-ban states made of
	// a burst, by a keeper that no longer cuts) that the broker took: the
	// burst messages of list root up to upto (Bursts) are on the broker.
	// It runs in the keeper's goroutine, outside its locks.
	Flushed func(root string, upto uint64)
	Policy  Policy           // escalation, quorum and reporter limits per list
	Logger  *slog.Logger     // nil: discard
	Now     func() time.Time // nil: time.Now
}

// Origin is the origin of the states the keeper makes from events.
const Origin = "keeper"

// Keeper keeps the lists of Options.Roots. Retained, Settle and Message
// may come from any goroutine (the hub calls Message in every publisher's
// own), and Run runs alongside them: the keeper locks inside.
type Keeper struct {
	o     Options
	sink  Sink
	log   *slog.Logger
	now   func() time.Time
	guard *guard.Guard
	quiet *logQuiet
	lists []*list
	copy  *copyLog       // nil without Options.Copy
	held  RetainedReader // the sink, if it is one: chunks are read there (releaseChunksLocked)
	pol   polState       // escalation, quorum, limits (policy.go), under mu

	// cutMu is held across a cut and its publishing (maintain, Flush),
	// outside mu: Flush returns only once a cut of Run is handed to the
	// Sink too.
	cutMu sync.Mutex

	mu      sync.Mutex
	bans    map[string]entry     // canonical state topic -> what the broker holds
	stated  map[string]time.Time // canonical state topic -> when a client last published it
	touched map[string]time.Time // the same, anyone's but this keeper's: clients' and other keepers'

	pubs    map[string]*pub // topic -> the keeper's own recent publishes
	pubsCap int             // len(pubs) that makes the next publish sweep it
	statCap int             // the same for stated
	due     expiryHeap
	wake    chan struct{}
	gen     uint16                // the current read of the retained messages, never 0 (nextGen)
	reading bool                  // Retained was called since the last Settle
	fixes   []fix                 // misspelt or refused states read, fixed at Settle
	allowed map[netip.Prefix]bool // the shared allowlist (allow.go)
	strs    interned
	swept   time.Time     // the last sweepLocked of Run
	cutCost time.Duration // the last cut's, built and published (burst.go)
	// cleaning: per-ban states the keeper deleted after a cut (their
	// chunk holds them), by topic, with the at deleted: their echo is
	// no unban.
	cleaning map[string]cleaned
	revived  map[string]revived // states cleanedLocked published again (cut.go)

	free freer // returns memory after big cuts and cleanups (free.go)
}

// list is one kept list.
type list struct {
	root string
	rec  wire.Record  // the list's epoch; Epoch "" until Settle decides
	read *wire.Record // the record read before Settle; nil: none
	junk bool         // a record that does not parse was read
	// settled: Settle decided the epoch once. Before, a record that comes
	// live is what the broker holds, not another keeper's.
	settled bool
	ch      chunkSet // the list's chunks and manifest (chunks.go)
}

// entry is what the keeper knows of one ban of a list: its per-ban state
// on the broker, its entry in a chunk (chunks.go), or both. 24 bytes, no
// pointer: the view of a million bans is a map of a million of them.
type entry struct {
	at    int64  // the state's At, Unix milliseconds: its version
	exp   int64  // when it expires, Unix seconds; 0: never
	meta  uint32 // the state's Reason, Origin and Count, interned together (Keeper.strs)
	gen   uint16 // the read of the retained messages that last saw it (Keeper.gen)
	list  uint8  // index in Keeper.lists
	flags uint8  // fState, fChunk, fBurst (no padding: no equal function to link)
}

const (
	fState = 1 << iota // the broker holds its per-ban state (ROOT/ban/PREFIX)
	fChunk             // a chunk holds it, with this at
)

// New returns a Keeper publishing through sink, with its copy loaded.
func New(o Options, sink Sink) (*Keeper, error) {
	if len(o.Roots) == 0 || len(o.Roots) > math.MaxUint8 {
		return nil, fmt.Errorf("keeper: %d lists to keep, want 1 to %d", len(o.Roots), math.MaxUint8)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Limits.MaxPayload == 0 {
		o.Limits.MaxPayload = DefaultMaxPayload
	}
	o.LegacyState = o.LegacyState || !chunksBuilt
	o.CutAfter = cmp.Or(o.CutAfter, DefaultCutAfter)
	o.CutEvery = cmp.Or(o.CutEvery, DefaultCutEvery)
	o.BurstLines = cmp.Or(o.BurstLines, DefaultBurstLines)
	k := &Keeper{o: o, sink: sink, log: o.Logger, now: o.Now,
		guard: guard.New(o.Limits.Allow, o.Limits.MinBitsV4, o.Limits.MinBitsV6),
		bans:  map[string]entry{}, stated: map[string]time.Time{}, pubs: map[string]*pub{},
		wake: make(chan struct{}, 1), gen: 1, pubsCap: 4096, statCap: 1024,
		strs: newInterned(), cleaning: map[string]cleaned{}, touched: map[string]time.Time{}}
	k.quiet = newQuiet(k.log, o.Now)
	k.held, _ = sink.(RetainedReader)
	for _, root := range o.Roots {
		if err := wire.ValidRoot(root); err != nil {
			return nil, fmt.Errorf("keeper: list %q: %w", root, err)
		}
		k.lists = append(k.lists, &list{root: root})
	}
	if err := k.openPolicy(); err != nil {
		return nil, err
	}
	if o.Copy != "" {
		c, err := openCopy(o.Copy, k.log, k.quiet)
		if err != nil {
			_ = k.closePolicy()
			return nil, err
		}
		k.copy = c
		if err := k.loadCopy(); err != nil {
			_ = k.Close()
			return nil, fmt.Errorf("keeper: read its copy: %w", err)
		}
	}
	return k, nil
}

// Filters are the topic filters the adapter subscribes to: the shared
// allowlist first (allow.go), then the events, the state and the record
// topic of each list, its reports and the reports it keeps pending, its
// manifest and its chunks.
func (k *Keeper) Filters() []string {
	f := append([]string(nil), allowFilters...)
	for _, l := range k.lists {
		f = append(f, wire.EventTopics(l.root)...)
		f = append(f, wire.StateFilter(l.root), wire.RecordTopic(l.root),
			wire.ReportFilter(l.root), wire.PendingFilter(l.root))
		if chunksBuilt {
			f = append(f, wire.ManifestTopic(l.root), wire.ChunksFilter(l.root))
		}
	}
	return f
}

// Close closes the keeper's copy and history. Call it after Run returned.
func (k *Keeper) Close() error {
	if k.copy == nil {
		return k.closePolicy()
	}
	return errors.Join(k.copy.kv.Close(), k.copy.lock.Close(), k.closePolicy())
}

// What a topic of Filters() carries.
const (
	onEvent = iota + 1
	onState
	onRecord
	onManifest
	onChunk
	onReport
	onPending
	onAllow
)

// route finds the list of topic and what the topic carries; 0 if none.
func (k *Keeper) route(topic string) (int, int) {
	if strings.HasPrefix(topic, wire.AllowPrefix) {
		return 0, onAllow
	}
	for i, l := range k.lists {
		switch {
		case wire.IsEventTopic(l.root, topic):
			return i, onEvent
		case topic == wire.RecordTopic(l.root):
			return i, onRecord
		case topic == wire.ManifestTopic(l.root):
			return i, onManifest
		case strings.HasPrefix(topic, wire.ChunkPrefix+l.root+"/"):
			if _, _, ok := wire.ParseChunkTopic(l.root, topic); ok {
				return i, onChunk
			}
		case strings.HasPrefix(topic, l.root+"/"+wire.LevelState+"/"):
			return i, onState
		case isReport(l.root, topic):
			return i, onReport
		case isPending(l.root, topic):
			return i, onPending
		}
	}
	return 0, 0
}

// Retained takes one retained message read on a Filters() topic, at start
// or after a lost session, before Settle.
func (k *Keeper) Retained(topic string, payload []byte) {
	i, what := k.route(topic)
	k.mu.Lock()
	if !k.reading { // a new read of the retained messages begins
		k.reading = true
		k.rereadLocked()
	}
	k.mu.Unlock()
	switch what {
	case onRecord:
		k.readRecord(k.lists[i], payload)
	case onState:
		k.state(i, topic, payload, false)
	case onManifest, onChunk:
		if chunksBuilt {
			k.readChunks(i, what, topic, payload)
		}
	case onPending:
		k.readPending(i, topic, payload)
	case onAllow:
		k.allowMessage(topic, payload)
	}
}

// rereadLocked begins a read of the retained messages after a lost
// session: a new generation (nextGen), and the publishes in flight may be
// lost. The first read of the keeper's life continues the generation of
// what it tracked live before (the hub serves clients before it loads the
// keeper): that is on the broker, whether the read saw it or not. A ban
// the keeper decided before the read, and whose state landed only after
// the read passed its topic, was forgotten at Settle, then published again
// at the next add of it (broker TestKeeperEvents, 1 run in 230).
func (k *Keeper) rereadLocked() {
	if !k.lists[0].settled {
		return
	}
	k.nextGen()
	for _, l := range k.lists { // the manifests in flight may be lost (cleanBackLocked)
		l.ch.manBack = l.ch.manSent
	}
	k.lostLocked()
}

// nextGen begins a read of the retained messages. 0 is a ban the copy
// holds but no read saw (copy.go); a view entry last seen 65,536 reads
// ago would be taken as seen by this one (forgetLocked), which no keeper
// lives to see.
func (k *Keeper) nextGen() {
	if k.gen++; k.gen == 0 {
		k.gen = 1
	}
}

// Message takes one live message on a Filters() topic. The keeper
// recognises its own publishes coming back by itself.
func (k *Keeper) Message(topic string, payload []byte) {
	i, what := k.route(topic)
	switch what {
	case onEvent:
		k.event(i, topic, payload)
	case onState:
		k.state(i, topic, payload, true)
	case onRecord:
		k.record(i, payload)
	case onManifest:
		if chunksBuilt {
			k.manifest(i, payload)
		}
	case onChunk:
		if chunksBuilt {
			k.chunk(i, topic, payload)
		}
	case onReport:
		by, _ := wire.ParseReportTopic(k.lists[i].root, topic)
		k.report(i, by, payload)
	case onAllow:
		k.allowMessage(topic, payload)
	}
}

// publish sends what the keeper decided, outside its lock: the sink may
// hand the message straight back to Message. It returns the first error.
func (k *Keeper) publish(out []retain) error {
	var first error
	for _, r := range out {
		if err := k.sink.Retain(r.topic, r.payload); err != nil {
			k.quiet.error("publish", "keeper publish failed", "topic", r.topic, "err", err)
			first = cmp.Or(first, err)
		}
	}
	return first
}

// retain is one message to publish.
type retain struct {
	topic   string
	payload []byte
}
