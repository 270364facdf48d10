package metrics

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/broker"
)

// reading is one reading of every metric: what write prints, as plain
// values, so that the format is tested against a golden file.
type reading struct {
	snap                               bridge.Snapshot
	size, capacity                     map[string]int64
	connected, subscribed              bool
	reconnects, messages, queue, syncs int64
	setsEmptied                        int64
	apply                              bridge.Histogram

	embedded        bool // the broker's figures below, else none
	broker          broker.Stats
	store           broker.StoreStats
	stored, storeOK bool // stored false: nothing stored, store is zero
}

func (e *Exporter) read(ctx context.Context) reading {
	r := reading{
		snap: e.Stats.Snapshot(), size: map[string]int64{}, capacity: map[string]int64{},
		connected: e.Stats.Connected.Load(), subscribed: e.Stats.Subscribed.Load(),
		reconnects: e.Stats.Reconnects.Load(), messages: e.Stats.Messages.Load(),
		queue: e.Stats.QueueDepth.Load(), syncs: e.Stats.Syncs.Load(), setsEmptied: e.Stats.SetsEmptied.Load(),
		apply: e.Stats.ApplyLatency(),
	}
	for _, s := range e.Sets {
		if info, err := e.Backend.Info(ctx, s); err == nil {
			r.capacity[s] = int64(info.MaxElem)
			if info.Size >= 0 { // nftables cannot count cheaply
				r.size[s] = int64(info.Size)
			}
		}
	}
	if e.Broker != nil {
		r.embedded, r.broker = true, e.Broker.Stats()
		r.store, r.stored = e.Broker.StoreStats()
		r.storeOK = r.stored && e.Broker.StoreHealth() == nil
	}
	return r
}

func write(w io.Writer, r reading) {
	family(w, "vallum_adds_total", "counter", "Entries added to kernel sets.", "set", r.snap.Adds)
	family(w, "vallum_dels_total", "counter", "Entries deleted from kernel sets.", "set", r.snap.Dels)
	family(w, "vallum_refused_total", "counter", "Input refused before the kernel, by reason.", "reason", r.snap.Refused)
	family(w, "vallum_errors_total", "counter", "Ops the kernel refused or could not apply, by kind.", "kind", r.snap.Errors)
	family(w, "vallum_set_entries", "gauge", "Entries in the kernel set.", "set", r.size)
	family(w, "vallum_set_capacity", "gauge", "Capacity of the kernel set (0: no fixed limit).", "set", r.capacity)
	gauge(w, "vallum_mqtt_connected", "gauge", "1 while connected to the MQTT broker.", b2i(r.connected))
	gauge(w, "vallum_mqtt_subscribed", "gauge", "1 once subscribed and synced on the current connection.", b2i(r.subscribed))
	gauge(w, "vallum_mqtt_reconnects_total", "counter", "Reconnections to the MQTT broker.", r.reconnects)
	gauge(w, "vallum_mqtt_messages_total", "counter", "MQTT messages received.", r.messages)
	gauge(w, "vallum_queue_depth", "gauge", "Messages waiting for the kernel.", r.queue)
	gauge(w, "vallum_syncs_total", "counter", "Completed reconciliations with the broker's state.", r.syncs)
	gauge(w, "vallum_sets_emptied_total", "counter", "Sets found emptied in place (flushed, or re-created by a firewall reload) and resynced.", r.setsEmptied)
	histogram(w, "vallum_apply_seconds", "Time to apply one batch to the kernel.", r.apply)
	if r.embedded {
		st := r.broker
		gauge(w, "vallum_broker_clients", "gauge", "Clients connected to the embedded broker.", st.ClientsConnected)
		gauge(w, "vallum_broker_messages_received_total", "counter", "Messages the embedded broker received.", st.MessagesReceived)
		gauge(w, "vallum_broker_messages_sent_total", "counter", "Messages the embedded broker sent.", st.MessagesSent)
		gauge(w, "vallum_broker_messages_dropped_total", "counter", "Messages the embedded broker dropped.", st.MessagesDropped)
		gauge(w, "vallum_broker_retained", "gauge", "Retained messages (ban states) the embedded broker holds.", st.Retained)
		family(w, "vallum_broker_refused_total", "counter", "What the embedded broker refused (logins, publishes, subscriptions, connections over a limit), by reason.", "reason", st.Refused)
		if ss := r.store; r.stored {
			gauge(w, "vallum_broker_store_ok", "gauge", "1 while the embedded broker's store writes.", b2i(r.storeOK))
			gauge(w, "vallum_broker_store_write_errors_total", "counter", "Store writes and fsyncs that failed.", ss.WriteErrors)
			gauge(w, "vallum_broker_store_refused_total", "counter", "Publishes refused because the store could not write.", ss.Refused)
			gauge(w, "vallum_broker_store_damaged_records", "gauge", "Damaged records skipped when the store was loaded.", int64(ss.Loaded.Records))
			gauge(w, "vallum_broker_store_bytes", "gauge", "Size of the store file.", ss.FileBytes)
		}
	}
}

func family(w io.Writer, name, typ, help, label string, values map[string]int64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s{%s=%q} %d\n", name, label, k, values[k])
	}
}

func gauge(w io.Writer, name, typ, help string, v int64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, typ, name, v)
}

func histogram(w io.Writer, name, help string, h bridge.Histogram) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	for i, ub := range bridge.ApplyBuckets {
		fmt.Fprintf(w, "%s_bucket{le=\"%g\"} %d\n", name, ub, h.Counts[i])
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", name, h.Count, name, h.Sum, name, h.Count)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
