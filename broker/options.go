// Package broker is vallum's embedded MQTT broker: mochi-mqtt with TCP, TLS
// and WebSocket listeners, users and ACLs from a YAML file, optional
// persistence, and the list keeper that turns legacy events into retained
// ban state and clears expired bans.
package broker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/vallum/vallum/internal/keeper"
	"github.com/vallum/vallum/internal/wire"
)

// Defaults sized for ban lists of a million retained entries and bulk QoS 1
// feeds; mochi's own defaults are sized for chat-like traffic.
const (
	// DefaultMaxMessageSize lets a bulk feed carry many addresses per
	// message (about 100,000 lines of an IPv4 address and a timeout).
	DefaultMaxMessageSize = 4 << 20
	// DefaultMaxClients bounds connected clients.
	DefaultMaxClients = 10000
	// DefaultMaxInflight is the most QoS 1/2 messages pending per client in
	// either direction: the MQTT packet id space, so a bulk feed is never
	// refused for flow control before its ids run out.
	DefaultMaxInflight = math.MaxUint16
	// DefaultMaxQueued is each client's outbound queue (mochi drops what
	// does not fit, silently at QoS 0). A new subscriber receives every
	// retained ban in one go, so the queue must hold a large list. The
	// queue is a channel of pointers, allocated per client: 8 bytes a slot.
	DefaultMaxQueued = 1 << 18
	// DefaultSessionExpiry keeps a disconnected persistent session (and
	// its queued messages) for a week. A host that comes back later starts
	// a new session and reconciles from the retained state instead.
	DefaultSessionExpiry = 7 * 24 * time.Hour
)

// Limits bound what one connection, client or user can make the broker
// hold. The defaults let a fleet of 1,000 hosts, each with its own login
// and a few lists, work untouched, and stop one login (or none) from
// exhausting the hub; broker/README.md says why each is what it is.
type Limits struct {
	// ConnectTimeout closes a connection that has not sent its whole
	// CONNECT packet in time.
	ConnectTimeout time.Duration `limit:"connect_timeout"`
	// MaxConnectSize bounds the CONNECT packet (credentials and will),
	// read before anyone is authenticated.
	MaxConnectSize int `limit:"max_connect_size"`
	// WriteStall closes a connection whose writes made no progress for
	// this long: the client stopped reading (stall.go).
	WriteStall time.Duration `limit:"write_stall"`
	// MaxConnsPerAddr bounds open connections from one source address,
	// logged in or not.
	MaxConnsPerAddr int `limit:"max_conns_per_addr"`
	// MaxSubscriptions bounds the topic filters of one client.
	MaxSubscriptions int `limit:"max_subscriptions"`
	// MaxTopicLength and MaxTopicLevels bound a topic or filter.
	MaxTopicLength int `limit:"max_topic_length"`
	MaxTopicLevels int `limit:"max_topic_levels"`
	// MaxTopicAliases bounds the MQTT 5 topic aliases of one client.
	MaxTopicAliases int `limit:"max_topic_aliases"`
	// MaxRetained and MaxRetainedBytes bound the retained messages one
	// user (admins excepted) has stored and their payload bytes.
	MaxRetained      int   `limit:"max_retained"`
	MaxRetainedBytes int64 `limit:"max_retained_bytes"`
}

// DefaultLimits are the limits a zero Limits field takes.
var DefaultLimits = Limits{
	ConnectTimeout:   5 * time.Second,
	MaxConnectSize:   16 << 10,
	WriteStall:       10 * time.Second,
	MaxConnsPerAddr:  256,
	MaxSubscriptions: 256,
	MaxTopicLength:   512,
	MaxTopicLevels:   32,
	MaxTopicAliases:  64,
	MaxRetained:      100000,
	MaxRetainedBytes: 64 << 20,
}

// ensureDefaults gives every zero field its default. Through reflection,
// as are validate and SetLimit: a field per limit in code is 40 KB of the
// MIPS build, over its size budget.
func (l *Limits) ensureDefaults() {
	v, d := reflect.ValueOf(l).Elem(), reflect.ValueOf(DefaultLimits)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			v.Field(i).Set(d.Field(i))
		}
	}
}

func (l Limits) validate() error {
	v := reflect.ValueOf(l)
	for i := range v.NumField() {
		if v.Field(i).Int() < 0 {
			return fmt.Errorf("broker limit %s cannot be negative", v.Type().Field(i).Tag.Get("limit"))
		}
	}
	if l.MaxTopicAliases > math.MaxUint16 {
		return fmt.Errorf("max topic aliases %d: must be at most 65535", l.MaxTopicAliases)
	}
	if l.MaxConnectSize < 128 {
		return fmt.Errorf("max connect size %d: a CONNECT needs at least 128 bytes", l.MaxConnectSize)
	}
	return nil
}

// Options configures the embedded broker. The zero value of every field but
// Listeners is usable.
type Options struct {
	Listeners []Listener
	// TLSCert and TLSKey are PEM files for tls listeners. TLSClientCA, when
	// set, makes tls listeners require a client certificate signed by it.
	TLSCert, TLSKey, TLSClientCA string
	// UsersFile is the YAML users and ACL file; "" means no users.
	UsersFile string
	// ExtraUsers are added to the file's, such as the credentials the
	// daemon's own bridge uses to reach its embedded broker.
	ExtraUsers []User
	// AllowAnonymous lets clients without credentials in. Without a users
	// file it is required to listen on anything but loopback.
	AllowAnonymous bool
	// DataDir is vallum's data dir (--data-dir): the store of retained
	// messages and persistent sessions is in DataDir/broker
	// (internal/datadir); "" keeps everything in memory only.
	DataDir string
	// Lists are the list roots (such as "blacklist" or "site1/blacklist")
	// the broker serves. Roles without explicit lists apply to these, or
	// to every topic when Lists is empty. The keeper keeps these and the
	// lists the users file gives hosts and reporters.
	Lists []string
	// Keeper is what the keeper refuses to turn into state: what the
	// bridges refuse (their payload limit, prefix widths and allowlist).
	Keeper keeper.Limits
	// LegacyState makes the keeper keep per-ban state for every ban besides
	// the chunks, for hosts of the previous release (keeper.Options).
	LegacyState bool
	// LegacyAuto, without LegacyState: a list already in the old spelling
	// keeps legacy state (keeper.Options).
	LegacyAuto bool
	// Policy is the keeper's escalation, quorum and reporter limits per
	// list (internal/policy); its history file is in DataDir/broker.
	Policy keeper.Policy
	// MaxMessageSize bounds one MQTT packet; default DefaultMaxMessageSize.
	MaxMessageSize int `limit:"max_message_size"`
	// MaxClients bounds connected clients; default DefaultMaxClients.
	MaxClients int `limit:"max_clients"`
	// MaxInflight bounds pending QoS 1/2 messages per client (1-65535);
	// default DefaultMaxInflight.
	MaxInflight int `limit:"max_inflight"`
	// MaxQueued bounds each client's outbound queue; default DefaultMaxQueued.
	MaxQueued int `limit:"max_queued"`
	// SessionExpiry is the longest a disconnected session is kept;
	// default DefaultSessionExpiry.
	SessionExpiry time.Duration `limit:"session_expiry"`
	// Limits bound connections, clients and users; a zero field takes
	// its DefaultLimits value.
	Limits Limits
	// WSHosts are names, besides the listener's own address, "localhost"
	// on loopback and the machine's host name, that a WebSocket client may
	// give as Host (a reverse proxy's public name, for example).
	WSHosts []string
	// Web is the address of the web view (internal/web), "" for none. It
	// needs UsersFile: its logins are the broker's admins and reporters.
	Web string
	// Logger receives the broker's logs; default discards them.
	Logger *slog.Logger
}

func (o *Options) ensureDefaults() {
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.MaxClients == 0 {
		o.MaxClients = DefaultMaxClients
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	if o.MaxQueued == 0 {
		o.MaxQueued = DefaultMaxQueued
	}
	if o.SessionExpiry == 0 {
		o.SessionExpiry = DefaultSessionExpiry
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o.Limits.ensureDefaults()
}

// validate returns every problem of o at once.
func (o *Options) validate() error {
	var errs []error
	if len(o.Listeners) == 0 {
		errs = append(errs, errors.New("no listener: give at least one --listen address"))
	}
	for _, l := range o.Listeners {
		if l.Kind == KindTLS && (o.TLSCert == "" || o.TLSKey == "") {
			errs = append(errs, fmt.Errorf("listener %s: tls needs --tls-cert and --tls-key", l))
		}
	}
	if o.TLSClientCA != "" && !o.hasKind(KindTLS) {
		errs = append(errs, errors.New("--tls-client-ca needs a tls:// listener"))
	}
	o.validateWeb(&errs)
	for _, root := range o.Lists {
		if err := wire.ValidRoot(root); err != nil {
			errs = append(errs, fmt.Errorf("list %q: %w", root, err))
		}
	}
	if o.MaxMessageSize < 0 || o.MaxClients < 0 || o.MaxQueued < 0 || o.SessionExpiry < 0 {
		errs = append(errs, errors.New("broker limits cannot be negative"))
	}
	if err := o.Limits.validate(); err != nil {
		errs = append(errs, err)
	}
	if o.MaxInflight < 0 || o.MaxInflight > math.MaxUint16 {
		errs = append(errs, fmt.Errorf("max inflight %d: must be 1-65535", o.MaxInflight))
	}
	return errors.Join(errs...)
}

func (o *Options) hasKind(k string) bool {
	for _, l := range o.Listeners {
		if l.Kind == k {
			return true
		}
	}
	return false
}

// loopbackOnly reports whether every listener binds a loopback address,
// where only local users can connect.
func (o *Options) loopbackOnly() bool {
	for _, l := range o.Listeners {
		if !l.loopback() {
			return false
		}
	}
	return true
}

// SetLimit sets one limit from NAME=VALUE, as --broker-limit gives it:
// NAME is the limit tag of a field of Options or Limits (as in
// broker/README.md), VALUE an integer or, for durations, a Go duration
// such as 10s.
func (o *Options) SetLimit(s string) error {
	name, val, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("broker limit %q: want NAME=VALUE", s)
	}
	f, names := limitField(reflect.ValueOf(o).Elem(), strings.TrimSpace(name))
	if !f.IsValid() {
		return fmt.Errorf("broker limit %q: unknown name (want one of %s)", name, strings.Join(names, ", "))
	}
	val = strings.TrimSpace(val)
	n, err := strconv.ParseInt(val, 10, 64)
	if f.Type() == reflect.TypeFor[time.Duration]() {
		var d time.Duration
		d, err = time.ParseDuration(val)
		n = int64(d)
	}
	if err != nil {
		return fmt.Errorf("broker limit %q: %w", s, err)
	}
	f.SetInt(n)
	return nil
}

// limitField finds the field tagged limit:"name" in v or its Limits, and
// returns every name it saw.
func limitField(v reflect.Value, name string) (reflect.Value, []string) {
	var names []string
	for i := range v.NumField() {
		tag := v.Type().Field(i).Tag.Get("limit")
		if v.Field(i).Kind() == reflect.Struct && v.Type().Field(i).Name == "Limits" {
			f, more := limitField(v.Field(i), name)
			if f.IsValid() {
				return f, nil
			}
			names = append(names, more...)
		} else if tag == name && tag != "" {
			return v.Field(i), nil
		} else if tag != "" {
			names = append(names, tag)
		}
	}
	return reflect.Value{}, names
}
