package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Bridge subscribes to ban lists on an MQTT broker and applies them to
// kernel sets through a Backend. Its fields are grouped by who uses them:
// set once by New, the decoding side (paho's message goroutine), the
// applying worker, and what both share behind their own locks.
type Bridge struct {
	// Set by New, read by all.
	opts  Options
	be    Backend
	log   *slog.Logger
	stats *Stats
	specs map[string]SetSpec // by set name, to create a set again

	// The one stop signal: cancelled when Run's ctx is done. Goroutines
	// started outside Run (syncs, repairs) go through spawn, and Run
	// waits for them.
	stopCtx    context.Context
	stopCancel context.CancelFunc
	taskMu     sync.Mutex // orders spawn against the stop
	tasks      sync.WaitGroup

	// The decoding side: paho's message goroutine, and the sync
	// goroutines for the markers.
	refuse  *refusals
	sync    syncer
	skew    skewWarn
	recent  recentState
	pending *semaphore.Weighted // decoded ops not yet applied
	queue   chan item           // decoding side to worker

	// The applying worker, and the repairs it asks for.
	comments   setFlags // sets whose entries can carry comments
	own        ownership
	events     eventAdds // when event adds were applied
	epochs     *epochs   // each list's epoch; SIGHUP asks for adoptions
	lostStreak int       // syncs in a row that found a list lost
	later      later     // the next sync asked for (see syncLater)
	repairs    repairs
	client     atomic.Pointer[mqtt.Client]
	brokers    *brokerList
}

// New checks o and returns a Bridge that applies to be.
func New(o Options, be Backend) (*Bridge, error) {
	o.ensureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	urls, _ := o.brokerURLs() // checked by Validate
	stopCtx, stop := context.WithCancel(context.Background())
	b := &Bridge{
		opts: o, be: be, log: o.Logger, stats: o.Stats,
		refuse:  newRefusals(o.Logger, o.Stats),
		queue:   make(chan item, o.QueueLen),
		pending: semaphore.NewWeighted(o.MaxPending),
		specs:   map[string]SetSpec{},
		stopCtx: stopCtx,
		repairs: repairs{poke: make(chan struct{}, 1)},
		epochs:  newEpochs(o.EpochFile, o.Logger),
	}
	b.stopCancel = stop
	b.brokers = newBrokerList(urls)
	for _, l := range o.Lists {
		b.specs[l.Set4] = SetSpec{Name: l.Set4, Family: IPv4, MaxElem: o.MaxElem, Create: o.Create}
		b.specs[l.Set6] = SetSpec{Name: l.Set6, Family: IPv6, MaxElem: o.MaxElem, Create: o.Create}
	}
	return b, nil
}

// Stats returns the bridge's counters.
func (b *Bridge) Stats() *Stats { return b.stats }

// Run makes sure the sets exist, connects, and applies messages until ctx
// is done. It returns nil on a clean shutdown, and an error for what a
// restart cannot fix: a set that is missing or of the wrong type, or a
// broker that refuses the credentials.
func (b *Bridge) Run(ctx context.Context) error {
	if _, err := b.ensureSets(ctx); err != nil {
		return err
	}
	b.loadOwned(ctx)
	c := mqtt.NewClient(b.clientOptions())
	b.client.Store(&c)
	if err := b.connect(ctx, c); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.work(ctx)
	}()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		b.watch(ctx)
	}()
	<-ctx.Done()
	b.taskMu.Lock()
	b.stopCancel()
	b.taskMu.Unlock()
	<-done // the batch in hand is applied and acknowledged
	<-watched
	c.Disconnect(250)
	b.tasks.Wait() // the disconnect ends a sync waiting on the broker
	b.log.Info("stopped")
	return nil
}

// spawn runs f on a goroutine that Run waits for; once the bridge is
// stopping it starts nothing.
func (b *Bridge) spawn(f func()) {
	b.taskMu.Lock()
	if b.stopCtx.Err() == nil {
		b.tasks.Add(1)
		go func() {
			f()
			b.tasks.Done() // a panic in f ends the process anyway
		}()
	}
	b.taskMu.Unlock()
}

// Resync makes sure the sets and the firewall rules exist again (creating
// what is missing, when allowed) and reconciles the sets to the broker's
// state, as after a reconnect. It is what SIGHUP does; the bridge also
// notices a removed set by itself (see watch).
//
// A list found lost at its last sync (epoch.go) takes the broker's list as
// it is at the next sync: SIGHUP is the operator's decision.
func (b *Bridge) Resync(ctx context.Context) error {
	if roots := b.epochs.requestAdopt(); len(roots) > 0 {
		b.log.Warn("SIGHUP: the next sync takes the broker's list as it is, and removes what it no longer holds", "topics", strings.Join(roots, ","))
	}
	return b.repair(ctx, true)
}

// ensureSets checks every set, creating those that are missing when
// allowed, and reports whether it created one.
func (b *Bridge) ensureSets(ctx context.Context) (created bool, err error) {
	for _, l := range b.opts.Lists {
		for _, name := range []string{l.Set4, l.Set6} {
			info, err := b.be.Ensure(ctx, b.specs[name])
			if err != nil {
				return created, fmt.Errorf("set %q for topic %q: %w", name, l.Root, err)
			}
			b.comments.set(name, info.Comments)
			if info.Created {
				if info.Comments {
					b.own.reset(name)
				}
				created = true
				b.log.Info("created set", "set", name, "type", info.Type, "family", info.Family.String(), "maxelem", info.MaxElem)
			}
		}
	}
	return created, nil
}

// loadOwned lists every set that takes comments, to know which of its
// entries are vallum's before the first message (see own.go).
func (b *Bridge) loadOwned(ctx context.Context) {
	listed := 0
	defer func() {
		if listed > bigSync { // give the listing's heap back, as a sync does
			debug.FreeOSMemory()
		}
	}()
	for _, l := range b.opts.Lists {
		for _, name := range []string{l.Set4, l.Set6} {
			if !b.comments.get(name) {
				continue
			}
			entries, err := b.be.List(ctx, name)
			if err != nil {
				b.log.Error("cannot list set: until a sync lists it, vallum cannot tell its entries from hand-made ones", "set", name, "err", err)
				continue
			}
			b.own.load(name, entries)
			listed += len(entries)
		}
	}
}
