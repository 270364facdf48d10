package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/mochi-mqtt/server/v2/packets"
)

// briefHandler is the handler mochi logs through: it writes a packet as
// one short summary instead of mochi's dump of the whole structure (3 KB
// a line), and drops mochi's line for an ACL refusal, which the auth hook
// has already logged in a readable line.
type briefHandler struct{ slog.Handler }

func (h *briefHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	drop := false
	r.Attrs(func(a slog.Attr) bool {
		switch v := a.Value.Any().(type) {
		case packets.Packet:
			a = slog.String(a.Key, summary(v))
		case *packets.Packet:
			a = slog.String(a.Key, summary(*v))
		case error:
			drop = drop || errors.Is(v, packets.ErrNotAuthorized)
		}
		out.AddAttrs(a)
		return true
	})
	if drop {
		return nil
	}
	return h.Handler.Handle(ctx, out)
}

func (h *briefHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &briefHandler{h.Handler.WithAttrs(as)}
}

func (h *briefHandler) WithGroup(name string) slog.Handler {
	return &briefHandler{h.Handler.WithGroup(name)}
}

// summary is one line about a packet: type, topic, QoS, retain, size.
func summary(pk packets.Packet) string {
	s := packets.PacketNames[pk.FixedHeader.Type]
	if pk.TopicName != "" {
		s += " topic=" + clip(pk.TopicName)
	}
	if pk.FixedHeader.Type == packets.Publish {
		s += fmt.Sprintf(" qos=%d retain=%v bytes=%d", pk.FixedHeader.Qos, pk.FixedHeader.Retain, len(pk.Payload))
	}
	if len(pk.Filters) > 0 {
		s += fmt.Sprintf(" filters=%d first=%s", len(pk.Filters), clip(pk.Filters[0].Filter))
	}
	return s
}
