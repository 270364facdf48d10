package bridge

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/bridge/mqttconn"
)

// Bridge subscribes to ban lists on an MQTT broker and applies them to
// kernel sets through a Backend. Its state is split by the goroutine that
// owns it, so that each file reaches only its owner's part: the decoding
// side (decoder, decode.go), the applying worker (applier, queue.go and
// the files it calls), and what all of them share (shared, below). The
// Bridge's own methods are the connection's: Run, paho's handlers and the
// syncs they start (mqtt.go, sync.go, brokers.go).
type Bridge struct {
	*shared
	dec *decoder
	app *applier
}

// shared is what every goroutine of the bridge uses: set by New and only
// read after, atomic, or behind a lock of its own.
type shared struct {
	opts  Options
	log   *slog.Logger
	stats *Stats
	stop  stopper

	refuse  *refusals // locked: the decoder refuses input, the worker kernel errors
	allow   allowlist // locked: the decoder reads the shared allowlist, the worker ends a read (allow.go)
	epochs  *epochs   // locked: the worker judges, the decoder and SIGHUP ask
	later   later     // locked: the worker and the decoder ask for a sync
	client  atomic.Pointer[mqtt.Client]
	brokers *mqttconn.Brokers // locked
	// confirming is set from a connection until its confirming sync is
	// done (see decoder.eventComment).
	confirming atomic.Bool
	// connects counts connections, for the status (presence.go): a quick
	// reconnection must replace the will the broker published.
	connects atomic.Int64
	// newSync starts a sync on c (Bridge.startSync), for syncLater.
	newSync func(c mqtt.Client)
}

// stopper is the one stop signal: cancelled when Run's ctx is done.
// Goroutines started outside Run (syncs, repairs) go through spawn, and
// Run waits for them.
type stopper struct {
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // orders spawn against the stop
	tasks  sync.WaitGroup
}

// New checks o and returns a Bridge that applies to be.
func New(o Options, be Backend) (*Bridge, error) {
	o.ensureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	urls, _ := o.brokerURLs() // checked by Validate
	sh := &shared{
		opts: o, log: o.Logger, stats: o.Stats,
		refuse:  newRefusals(o.Logger, o.Stats),
		epochs:  newEpochs(o.EpochFile, o.Logger),
		brokers: mqttconn.NewBrokers(urls, nil),
	}
	sh.stop.ctx, sh.stop.cancel = context.WithCancel(context.Background())
	b := &Bridge{shared: sh, dec: &decoder{shared: sh}, app: newApplier(sh, be)}
	b.dec.loadAllow()
	sh.newSync = b.startSync
	b.dec.sync.refs = &sh.later
	return b, nil
}

// Stats returns the bridge's counters.
func (b *Bridge) Stats() *Stats { return b.stats }

// Run makes sure the sets exist, connects, and applies messages until ctx
// is done. It returns nil on a clean shutdown, and an error for what a
// restart cannot fix: a set that is missing or of the wrong type, or a
// broker that refuses the credentials.
func (b *Bridge) Run(ctx context.Context) error {
	if _, err := b.app.ensureSets(ctx); err != nil {
		return err
	}
	b.app.loadOwned(ctx)
	c := mqtt.NewClient(b.clientOptions())
	b.client.Store(&c)
	if err := b.connect(ctx, c); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if !presenceBuilt {
			return err
		}
		if c, err = b.connectNoWill(ctx, err); err != nil {
			return err
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.app.work(ctx)
	}()
	b.watchOwn(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		b.app.watch(ctx)
	}()
	var stopPresence func()
	if presenceBuilt {
		stopPresence = b.startPresence(ctx, c)
	}
	<-ctx.Done()
	b.stop.halt()
	<-done // the batch in hand is applied and acknowledged
	<-watched
	if presenceBuilt {
		stopPresence() // the status says offline
	}
	c.Disconnect(250)
	b.stop.tasks.Wait() // the disconnect ends a sync waiting on the broker
	b.log.Info("stopped")
	return nil
}

// spawn runs f on a goroutine that Run waits for; once the bridge is
// stopping it starts nothing.
func (s *stopper) spawn(f func()) {
	s.mu.Lock()
	if s.ctx.Err() == nil {
		s.tasks.Add(1)
		go func() {
			f()
			s.tasks.Done() // a panic in f ends the process anyway
		}()
	}
	s.mu.Unlock()
}

// halt gives the stop signal; spawn starts nothing after it.
func (s *stopper) halt() {
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
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
	return b.app.repair(ctx, true)
}
