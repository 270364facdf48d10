package broker

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
)

// storeFile is the log file in DataDir/broker.
const storeFile = "store.log"

// storeConfig configures the store hook.
type storeConfig struct {
	Path   string
	Logger *slog.Logger
	KV     kvOptions
}

// store is a mochi storage hook over kv. It keeps the records mochi's
// pebble hook keeps, under the same keys and as the same JSON (mochi's
// storage types), packet ids included: mochi's bolt and redis hooks drop
// them and a restored session then reconnects in a loop. Unlike the
// pebble hook it does not store the inline client's subscriptions: mochi
// would restore them as a network client's and queue every message for a
// client that never reads.
type store struct {
	mqtt.HookBase
	kv  *kv
	log *slog.Logger
}

func (h *store) ID() string { return "vallum-store" }

func (h *store) Provides(b byte) bool {
	return bytes.Contains([]byte{
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
func (h *store) Init(config any) error {
	c, ok := config.(*storeConfig)
	if !ok || c == nil || c.Path == "" {
		return mqtt.ErrInvalidConfigType
	}
	h.log = c.Logger
	if h.log == nil {
		h.log = h.Log
	}
	db, err := openKV(c.Path, h.log, c.KV)
	if err != nil {
		return err
	}
	h.kv = db
	return nil
}

// Stop syncs and closes the file.
func (h *store) Stop() error {
	if h.kv == nil {
		return nil
	}
	err := h.kv.Close()
	if err != nil {
		h.log.Error("close store", "error", err)
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

func (h *store) set(key string, v storage.Serializable) {
	b, err := v.MarshalBinary()
	if err == nil {
		err = h.kv.Set(key, b)
	}
	if err != nil {
		h.log.Error("store: write failed", "key", key, "error", err)
	}
}

func (h *store) del(key string) {
	if err := h.kv.Delete(key); err != nil {
		h.log.Error("store: delete failed", "key", key, "error", err)
	}
}

func (h *store) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) { h.updateClient(cl) }

func (h *store) OnWillSent(cl *mqtt.Client, _ packets.Packet) { h.updateClient(cl) }

func (h *store) updateClient(cl *mqtt.Client) {
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
func (h *store) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.updateClient(cl)
	if !expire || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return
	}
	h.del(clientKey(cl))
}

func (h *store) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
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

func (h *store) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	for _, f := range pk.Filters {
		h.del(subscriptionKey(cl, f.Filter))
	}
}

// OnRetainMessage stores a retained message; r is -1 when an empty
// payload deleted it.
func (h *store) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if r == -1 {
		h.del(retainedKey(pk.TopicName))
		return
	}
	m := message(pk)
	m.ID, m.T, m.Client = retainedKey(pk.TopicName), storage.RetainedKey, cl.ID
	h.set(m.ID, m)
}

// OnQosPublish stores a message in flight to cl, with its packet id.
// mochi also calls it with the PUBACK it owes a client for each QoS 1
// message the client published: not stored (the pebble hook did), it
// doubled the writes of a bulk feed, and after a restart a client resends
// an unacknowledged PUBLISH itself, which is idempotent here.
func (h *store) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if pk.FixedHeader.Type == packets.Puback {
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

func (h *store) OnQosComplete(cl *mqtt.Client, pk packets.Packet) { h.del(inflightKey(cl, pk)) }

func (h *store) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { h.del(inflightKey(cl, pk)) }

func (h *store) OnSysInfoTick(sys *system.Info) {
	h.set(storage.SysInfoKey, &storage.SystemInfo{ID: storage.SysInfoKey, T: storage.SysInfoKey, Info: *sys.Clone()})
}

func (h *store) OnRetainedExpired(topic string) { h.del(retainedKey(topic)) }

func (h *store) OnClientExpired(cl *mqtt.Client) { h.del(clientKey(cl)) }

func (h *store) StoredClients() ([]storage.Client, error) {
	return stored[storage.Client](h, storage.ClientKey+"_")
}

func (h *store) StoredSubscriptions() ([]storage.Subscription, error) {
	return stored[storage.Subscription](h, storage.SubscriptionKey+"_")
}

func (h *store) StoredInflightMessages() ([]storage.Message, error) {
	return stored[storage.Message](h, storage.InflightKey+"_")
}

func (h *store) StoredRetainedMessages() ([]storage.Message, error) {
	return stored[storage.Message](h, storage.RetainedKey+"_")
}

func (h *store) StoredSysInfo() (storage.SystemInfo, error) {
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
}](h *store, prefix string) ([]T, error) {
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
