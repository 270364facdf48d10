package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"

	"github.com/vallum/vallum/internal/store"
	"github.com/vallum/vallum/internal/wire"
)

// storeConfig configures the store hook.
type storeConfig struct {
	Path   string
	Logger *slog.Logger
	KV     store.Options
	// Lock is the data dir's broker lock, held by the caller; the hook
	// releases it when it stops, after the file is closed.
	Lock io.Closer
	// Events are the topics whose messages the keeper turns into state
	// (ROOT, ROOT/add, ROOT/del of each list).
	Events []string
}

// storeHook is a mochi storage hook over internal/store. It keeps the
// records mochi's pebble hook keeps, under the same keys and as the same
// JSON (mochi's storage types), packet ids included: mochi's bolt and redis hooks drop
// them and a restored session then reconnects in a loop. Unlike the
// pebble hook it does not store the inline client's subscriptions: mochi
// would restore them as a network client's and queue every message for a
// client that never reads.
type storeHook struct {
	mqtt.HookBase
	kv       *store.KV
	lock     io.Closer
	events   map[string]bool // storeConfig.Events
	log      *slog.Logger
	refused  atomic.Int64 // publishes refused because the store could not write
	refusing atomic.Bool  // a refusal was logged and no publish passed since
	journal  *journal     // the burst journal (journal.go); nil without a keeper
}

func (h *storeHook) ID() string { return "vallum-store" }

func (h *storeHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnPublish,
		mqtt.OnPublished,
		mqtt.OnSessionEstablished,
		mqtt.OnDisconnect,
		mqtt.OnSubscribed,
		mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage,
		mqtt.OnWillSent,
		mqtt.OnQosPublish,
		mqtt.OnQosComplete,
		mqtt.OnQosDropped,
		mqtt.OnSysInfoTick,
		mqtt.OnClientExpired,
		mqtt.OnRetainedExpired,
		mqtt.StoredClients,
		mqtt.StoredInflightMessages,
		mqtt.StoredRetainedMessages,
		mqtt.StoredSubscriptions,
		mqtt.StoredSysInfo,
	}, []byte{b})
}

// Init opens the log file named in config, a *storeConfig.
func (h *storeHook) Init(config any) error {
	c, ok := config.(*storeConfig)
	if !ok || c == nil || c.Path == "" {
		return mqtt.ErrInvalidConfigType
	}
	h.log = c.Logger
	if h.log == nil {
		h.log = h.Log
	}
	c.KV.Logger = h.log
	db, err := store.Open(c.Path, c.KV)
	if err != nil {
		return err
	}
	h.kv, h.lock, h.events = db, c.Lock, map[string]bool{}
	for _, t := range c.Events {
		h.events[t] = true
	}
	return nil
}

// Stop syncs and closes the file, then lets the next process in.
func (h *storeHook) Stop() error {
	if h.kv == nil {
		return nil
	}
	err := h.kv.Close()
	if err != nil {
		h.log.Error("close store", "error", err)
	}
	if h.lock != nil {
		_ = h.lock.Close()
	}
	return err
}

func clientKey(cl *mqtt.Client) string { return storage.ClientKey + "_" + cl.ID }

func subscriptionKey(cl *mqtt.Client, filter string) string {
	return storage.SubscriptionKey + "_" + cl.ID + ":" + filter
}

func retainedKey(topic string) string { return storage.RetainedKey + "_" + topic }

func inflightKey(cl *mqtt.Client, pk packets.Packet) string {
	return storage.InflightKey + "_" + cl.ID + ":" + pk.FormatID()
}

// set and del are the writes nobody waits for (sessions, subscriptions,
// queued messages): a failure is counted by the store, which logs when it
// starts failing, and makes OnPublish refuse publishes until it works.
func (h *storeHook) set(key string, v storage.Serializable) {
	if err := h.trySet(key, v); err != nil {
		h.log.Debug("store: write failed", "key", key, "error", err)
	}
}

func (h *storeHook) trySet(key string, v storage.Serializable) error {
	b, err := v.MarshalBinary()
	if err != nil {
		return err
	}
	return h.kv.Set(key, b)
}

func (h *storeHook) del(key string) {
	if err := h.kv.Delete(key); err != nil {
		h.log.Debug("store: delete failed", "key", key, "error", err)
	}
}

func (h *storeHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) { h.updateClient(cl) }

func (h *storeHook) OnWillSent(cl *mqtt.Client, _ packets.Packet) { h.updateClient(cl) }

func (h *storeHook) updateClient(cl *mqtt.Client) {
	props := cl.Properties.Props.Copy(false)
	h.set(clientKey(cl), &storage.Client{
		ID:              cl.ID,
		T:               storage.ClientKey,
		Remote:          cl.Net.Remote,
		Listener:        cl.Net.Listener,
		Username:        cl.Properties.Username,
		Clean:           cl.Properties.Clean,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval: props.SessionExpiryInterval,
			AuthenticationMethod:  props.AuthenticationMethod,
			AuthenticationData:    props.AuthenticationData,
			RequestProblemInfo:    props.RequestProblemInfo,
			RequestResponseInfo:   props.RequestResponseInfo,
			ReceiveMaximum:        props.ReceiveMaximum,
			TopicAliasMaximum:     props.TopicAliasMaximum,
			User:                  props.User,
			MaximumPacketSize:     props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	})
}

// OnDisconnect keeps the session unless it expired; a session taken over
// by a new connection of the same client lives on.
func (h *storeHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if h.journal != nil {
		h.journal.taken(cl) // its last message, if mochi never handed it on
	}
	h.updateClient(cl)
	if !expire || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return
	}
	h.del(clientKey(cl))
}

// OnPublished: mochi handed cl's message to its subscribers, the keeper
// included, which took it (journal.go).
func (h *storeHook) OnPublished(cl *mqtt.Client, _ packets.Packet) {
	if h.journal != nil {
		h.journal.taken(cl)
	}
}

func (h *storeHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline {
		return
	}
	for i, f := range pk.Filters {
		if i >= len(codes) {
			break
		}
		sub := &storage.Subscription{
			ID:                subscriptionKey(cl, f.Filter),
			T:                 storage.SubscriptionKey,
			Client:            cl.ID,
			Qos:               codes[i],
			Filter:            f.Filter,
			Identifier:        f.Identifier,
			NoLocal:           f.NoLocal,
			RetainHandling:    f.RetainHandling,
			RetainAsPublished: f.RetainAsPublished,
		}
		h.set(sub.ID, sub)
	}
}

func (h *storeHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	for _, f := range pk.Filters {
		h.del(subscriptionKey(cl, f.Filter))
	}
}

// OnRetainMessage stores a retained message; r is -1 when an empty
// payload deleted it.
func (h *storeHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if r == -1 {
		h.del(retainedKey(pk.TopicName))
		return
	}
	h.set(retainedKey(pk.TopicName), retained(cl, pk))
}

// retained is the record of a retained message. OnPublish and
// OnRetainMessage build the same one, so that the second write is skipped
// (the store writes nothing for a value a key already has).
func retained(cl *mqtt.Client, pk packets.Packet) *storage.Message {
	m := message(pk)
	m.ID, m.T, m.Client = retainedKey(pk.TopicName), storage.RetainedKey, cl.ID
	return m
}

// OnQosPublish stores a message in flight to cl, with its packet id.
// mochi also calls it with the PUBACK it owes a client for each QoS 1
// message the client published: not stored (the pebble hook did), it
// doubled the writes of a bulk feed, and after a restart a client resends
// an unacknowledged PUBLISH itself, which is idempotent here.
//
// Nor a chunk of a compact list: its readers read the list again on every
// connection (bridge/sync.go; docs/compact-list.md), and a chunk sent
// again after a restart may be of a generation deleted since. Stored, each
// host's sync of a list of 100,000 made about 13 MB of garbage on the hub
// (each 94 KB chunk as JSON with its payload in base64, then as a record;
// half of what the sync allocated there) and wrote as much to the store,
// deleted at the PUBACK.
func (h *storeHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if pk.FixedHeader.Type == packets.Puback || strings.HasPrefix(pk.TopicName, wire.ChunkPrefix) {
		return
	}
	m := message(pk)
	m.ID, m.T, m.Client = inflightKey(cl, pk), storage.InflightKey, cl.ID
	m.PacketID, m.Sent = pk.PacketID, sent
	h.set(m.ID, m)
}

func message(pk packets.Packet) *storage.Message {
	props := pk.Properties.Copy(false)
	return &storage.Message{
		Origin:      pk.Origin,
		FixedHeader: pk.FixedHeader,
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		Created:     pk.Created,
		Properties: storage.MessageProperties{
			PayloadFormat:          props.PayloadFormat,
			MessageExpiryInterval:  props.MessageExpiryInterval,
			ContentType:            props.ContentType,
			ResponseTopic:          props.ResponseTopic,
			CorrelationData:        props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier,
			TopicAlias:             props.TopicAlias,
			User:                   props.User,
		},
	}
}

func (h *storeHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) { h.del(inflightKey(cl, pk)) }

func (h *storeHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { h.del(inflightKey(cl, pk)) }

func (h *storeHook) OnSysInfoTick(sys *system.Info) {
	h.set(storage.SysInfoKey, &storage.SystemInfo{ID: storage.SysInfoKey, T: storage.SysInfoKey, Info: *sys.Clone()})
}

func (h *storeHook) OnRetainedExpired(topic string) { h.del(retainedKey(topic)) }

func (h *storeHook) OnClientExpired(cl *mqtt.Client) { h.del(clientKey(cl)) }

func (h *storeHook) StoredClients() ([]storage.Client, error) {
	return stored[storage.Client](h, storage.ClientKey+"_")
}

func (h *storeHook) StoredSubscriptions() ([]storage.Subscription, error) {
	return stored[storage.Subscription](h, storage.SubscriptionKey+"_")
}

func (h *storeHook) StoredInflightMessages() ([]storage.Message, error) {
	return stored[storage.Message](h, storage.InflightKey+"_")
}

func (h *storeHook) StoredRetainedMessages() ([]storage.Message, error) {
	return stored[storage.Message](h, storage.RetainedKey+"_")
}

func (h *storeHook) StoredSysInfo() (storage.SystemInfo, error) {
	var v storage.SystemInfo
	b, ok, err := h.kv.Get(storage.SysInfoKey)
	if err != nil || !ok {
		return v, err
	}
	if err := v.UnmarshalBinary(b); err != nil {
		h.log.Warn("store: unreadable $SYS record ignored", "error", err)
	}
	return v, nil
}

// stored decodes every record under prefix. A record that does not decode
// is skipped and counted in one log line: the rest still loads.
func stored[T any, P interface {
	*T
	storage.Serializable
}](h *storeHook, prefix string) ([]T, error) {
	var out []T
	bad := 0
	err := h.kv.Scan(prefix, func(_ string, val []byte) error {
		var v T
		if err := P(&v).UnmarshalBinary(val); err != nil {
			bad++
			return nil
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load %s records: %w", prefix, err)
	}
	if bad > 0 {
		h.log.Warn("store: unreadable records skipped", "kind", prefix, "count", bad)
	}
	return out, nil
}
