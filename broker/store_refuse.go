package broker

import (
	"errors"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// OnPublish stores a retained message (or its deletion) before mochi
// retains it and acknowledges it (mochi v2.7.9 sends the PUBACK after the
// OnPublish hooks, in processPublish): if the write fails, the publish is
// refused, so no client gets a PUBACK for a ban that was not stored.
// OnRetainMessage later writes the same record again, which the store
// skips. While the store fails, the legacy events the keeper turns into
// state are refused too: the keeper publishes their state after the
// PUBACK, too late to refuse. A burst, and while the journal holds one,
// what may unban its bans, are journaled here too (journal.go). Other
// publishes (sync markers, events of
// topics that are not lists) pass: they are delivered live as usual.
func (h *storeHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	var err error
	switch {
	case pk.FixedHeader.Retain && len(pk.Payload) == 0:
		err = h.kv.Delete(retainedKey(pk.TopicName))
	case pk.FixedHeader.Retain:
		err = h.trySet(retainedKey(pk.TopicName), retained(cl, pk))
	case h.events[pk.TopicName]:
		err = h.kv.Health()
	}
	if err == nil && h.journal != nil {
		err = h.journal.write(cl, pk, h.events[pk.TopicName])
	}
	if err == nil {
		if pk.FixedHeader.Retain || h.events[pk.TopicName] {
			h.refusing.Store(false)
		}
		return pk, nil
	}
	h.refuse(cl, pk, err)
	return pk, packets.ErrRejectPacket
}

// refuse tells the publisher that its message was not taken: an MQTT 5
// client gets a PUBACK (PUBREC at QoS 2) with an error reason code, an
// MQTT 3.1.1 client, which has no such code, loses its connection (and
// resends later). A QoS 0 publish has no answer: it is dropped. The first
// refusal after a publish that passed is logged; all are counted.
func (h *storeHook) refuse(cl *mqtt.Client, pk packets.Packet, err error) {
	h.refused.Add(1)
	if !h.refusing.Swap(true) {
		h.log.Error("store: refusing publishes, the store cannot write", "user", string(cl.Properties.Username),
			"client", cl.ID, "topic", pk.TopicName, "err", err)
	}
	if cl.Net.Inline || pk.FixedHeader.Qos == 0 {
		return
	}
	code := packets.ErrUnspecifiedError
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		code = packets.ErrQuotaExceeded
	}
	if cl.Properties.ProtocolVersion < 5 {
		cl.Stop(code)
		return
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID: pk.PacketID, ReasonCode: code.Code}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	if p := cl.Properties.Props; !p.RequestProblemInfoFlag || p.RequestProblemInfo == 1 {
		ack.Properties.ReasonString = "the broker cannot store it: " + code.Reason
	}
	_ = cl.WritePacket(ack)
}
