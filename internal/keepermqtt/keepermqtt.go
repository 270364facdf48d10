// Package keepermqtt runs list keepers (internal/keeper) against any MQTT
// 3.1.1 broker, over paho: mosquitto, a NATS cluster, the embedded broker of
// another host. It is what `vallum keeper` runs.
//
// The connection is the bridge's: a stable client id, a persistent session
// (clean session off) and QoS 1, so that the events of a keeper that is
// stopped wait in its session; several brokers tried in turn. A message is
// acknowledged only once the keeper has handled it and the broker has
// acknowledged every retained message the keeper published for it, so a
// keeper killed at any instant loses nothing: the broker sends again what
// was not acknowledged.
//
// When a connection starts without the session (the first start, or a
// broker that lost it), and at every start of the process, the adapter
// reads the retained messages of the keeper's filters to their end (its
// own marker coming back, see read.go), hands each to Retained, then calls
// Settle, and from then on hands every message to Message.
package keepermqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/url"
	"time"
)

// Keeper is what the adapter drives: internal/keeper's *Keeper. Filters,
// Retained, Settle and Message are called from one goroutine; Run runs
// beside them.
type Keeper interface {
	Filters() []string                     // the topics to subscribe to: events exactly, values (state) by wildcard or under vallum/
	Retained(topic string, payload []byte) // a retained message of the read before Settle
	Settle() error                         // every retained message has been read
	Message(topic string, payload []byte)  // a live message, after Settle
	// Unflushed reports that the keeper holds bans no retained message
	// carries yet (a burst waiting for its cut): the messages it took are
	// acknowledged only after Flush, which publishes them.
	Unflushed() bool
	Flush()
	Run(ctx context.Context) error // expires bans until ctx is done
}

// Options configure the connection.
type Options struct {
	Brokers  []*url.URL // tried in turn; at least one
	ClientID string     // stable: the session that keeps the events of a stopped keeper
	Username string
	Password string
	TLS      *tls.Config

	// ConnectTimeout bounds one connection attempt; default 10 s.
	ConnectTimeout time.Duration
	// SyncTimeout: a read of the retained state that receives nothing for
	// this long drops the connection and moves to the next broker (the
	// bridge's --sync-timeout); default 1 min.
	SyncTimeout time.Duration

	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if len(o.Brokers) == 0 {
		return o, errors.New("keeper: no broker")
	}
	if o.ClientID == "" {
		return o, errors.New("keeper: no client id")
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.SyncTimeout == 0 {
		o.SyncTimeout = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}
