package keepermqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/vallum/vallum/bridge/mqttconn"
)

// Adapter connects keepers to a broker. It is also their Sink.
type Adapter struct {
	o       Options
	log     *slog.Logger
	cl      mqtt.Client
	brokers *mqttconn.Brokers

	in     queue          // messages and connections, for the worker
	lastIn atomic.Int64   // Unix nanoseconds of the last message received
	acks   chan pending   // publishes and acknowledgements, in order
	fatal  chan error     // what retrying cannot fix, found off the worker
	done   chan struct{}  // closed when Run has stopped the keepers
	ackers sync.WaitGroup // the acker
	// pubFailed counts the publishes that failed, dials the connections
	// made; synced and syncedDials, those Sync saw.
	pubFailed, synced, dials, syncedDials atomic.Int64
}

// New checks the options and makes the client; Run connects.
func New(o Options) (*Adapter, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &Adapter{o: o, log: o.Logger,
		in: queue{ready: make(chan struct{}, 1)}, acks: make(chan pending, ackWindow),
		fatal: make(chan error, 1), done: make(chan struct{})}
	a.brokers = mqttconn.NewBrokers(o.Brokers, func(c net.Conn, u *url.URL) net.Conn {
		a.dials.Add(1) // before paho sends anything on it (Sync)
		return newSessConn(c, u)
	})
	co := a.brokers.ClientOptions(mqttconn.Client{
		ID: o.ClientID, Username: o.Username, Password: o.Password, TLS: o.TLS,
		ConnectTimeout: o.ConnectTimeout,
	})
	// The message handler only queues: it never blocks.
	co.SetDefaultPublishHandler(a.onMessage).
		SetOnConnectHandler(a.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			a.log.Warn("disconnected", "broker", a.brokerName(), "err", err)
		})
	a.cl = mqtt.NewClient(co)
	return a, nil
}

// onMessage runs on paho's router goroutine. It only queues: a handler
// that waits stalls paho's reading, PUBACKs included, and the worker waits
// for PUBACKs before it acknowledges. The queue needs no bound of its own:
// every message is QoS 1 and unacknowledged until handled, so the broker's
// in-flight window bounds it.
func (a *Adapter) onMessage(_ mqtt.Client, m mqtt.Message) {
	a.lastIn.Store(time.Now().UnixNano())
	a.in.push(event{msg: m})
}

func (a *Adapter) onConnect(mqtt.Client) {
	c := a.current()
	a.log.Info("connected", "broker", a.brokerName(), "client", a.o.ClientID, "session", c.sessionPresent())
	a.in.push(event{conn: c})
}

func (a *Adapter) brokerName() string {
	name, _ := a.brokers.Current()
	return name
}

// current returns the connection in use; nil before the first.
func (a *Adapter) current() *sessConn {
	_, c := a.brokers.Current()
	sc, _ := c.(*sessConn)
	return sc
}

// Run connects and runs k until ctx is done: the reads, the live messages
// and, from the first Settle on, k.Run. It returns nil when ctx ends, and
// an error for what a retry cannot fix (a refused login or subscription,
// a failed Settle).
func (a *Adapter) Run(ctx context.Context, k Keeper) error {
	ackCtx, stopAcks := context.WithCancel(context.Background())
	defer stopAcks()
	a.ackers.Add(1)
	go a.acker(ackCtx)
	if err := a.connect(ctx); err != nil || ctx.Err() != nil {
		close(a.done)
		return err
	}
	w := newWorker(a, k)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.run(gctx) })
	g.Go(func() error {
		select {
		case <-w.first:
		case <-gctx.Done():
			return nil
		}
		if err := k.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("keeper: %w", err)
		}
		return nil
	})
	err := g.Wait()
	close(a.done)
	a.finish(stopAcks)
	return err
}

// connect makes the first connection (see mqttconn.Connect); it returns
// nil when ctx ends first.
func (a *Adapter) connect(ctx context.Context) error {
	err := mqttconn.Connect(ctx, a.cl, func(err error, in time.Duration) {
		a.log.Warn("cannot connect, retrying", "broker", a.brokerName(), "in", in, "err", err)
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("broker refused the keeper's connection: %s: %v", a.brokerName(), err)
	}
	return nil
}

// failed reports an error that retrying cannot fix to Run.
func (a *Adapter) failed(err error) {
	select {
	case a.fatal <- err:
	default:
	}
}

// event is a message, or a new connection (msg nil).
type event struct {
	msg  mqtt.Message
	conn *sessConn
}

// queue hands events from paho's goroutines to the worker, in order.
type queue struct {
	mu    sync.Mutex
	items []event
	ready chan struct{} // a token when items is not empty
}

func (q *queue) push(e event) {
	q.mu.Lock()
	q.items = append(q.items, e)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *queue) take() []event {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}
