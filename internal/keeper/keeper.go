// Package keeper is the owner of a list's state: it turns the list's
// events (ROOT/add, ROOT/del, the bare ROOT) into retained state, expires
// bans, keeps the list's record (vallum/keeper/ROOT, with its epoch) and
// rebuilds a list the broker lost from its own copy. It knows no broker:
// an adapter feeds it what it reads (Retained, Settle, Message) and gives
// it a Sink to publish through. The embedded broker runs it inline
// (broker/keeper.go); `vallum keeper` runs it over an MQTT client.
package keeper

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"
)

// Sink publishes the keeper's retained messages (QoS 1). An empty payload
// deletes the retained message. Retain may deliver the message back to the
// keeper (Message) before it returns: the keeper holds no lock across it.
type Sink interface {
	Retain(topic string, payload []byte) error
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
	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // nil: time.Now
}

// Keeper keeps the lists of Options.Roots.
type Keeper struct {
	o    Options
	sink Sink
}

// New returns a Keeper publishing through sink, with its copy loaded.
func New(o Options, sink Sink) (*Keeper, error) {
	return nil, errors.ErrUnsupported
}

// Filters are the topic filters the adapter subscribes to: the events,
// the state and the record topic of each list.
func (k *Keeper) Filters() []string { return nil }

// Retained takes one retained message read on a Filters() topic, at start
// or after a lost session, before Settle.
func (k *Keeper) Retained(topic string, payload []byte) {}

// Settle is called once every retained message was read (the adapter's
// sync marker came back): the keeper decides each list's epoch, restores
// a list the broker lost from its copy, fixes what it refused or found
// misspelt, and publishes the record.
func (k *Keeper) Settle() error { return errors.ErrUnsupported }

// Message takes one live message on a Filters() topic. The keeper
// recognises its own publishes coming back by itself.
func (k *Keeper) Message(topic string, payload []byte) {}

// Run expires bans until ctx is done.
func (k *Keeper) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// Close closes the keeper's copy. Call it after Run returned.
func (k *Keeper) Close() error { return nil }
