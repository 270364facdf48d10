package metrics

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/broker"
)

// reading is one reading of every metric: what write prints, as plain
// values, so that the format is tested against a golden file.
type reading struct {
	bridge                             bool // the bridge's figures below, else none (vallum broker)
	snap                               bridge.Snapshot
	size, capacity                     map[string]int64
	connected, subscribed              bool
	reconnects, messages, queue, syncs int64
	setsEmptied                        int64
	apply                              bridge.Histogram
	lost                               map[string]int64 // per list: 1 while lost
	drops                              []Drop           // nil: no rules of vallum's own
	sensor                             *SensorCounts    // nil: no scan sensor

	embedded        bool // the broker's figures below, else none
	broker          broker.Stats
	store           broker.StoreStats
	stored, storeOK bool               // stored false: nothing stored, store is zero
	hosts           *broker.HostsStats // nil: no hosts' view (router builds)
}

func (e *Exporter) read(ctx context.Context) reading {
	var r reading
	if e.Stats != nil {
		r = e.readBridge(ctx)
	}
	if e.Broker != nil {
		r.embedded, r.broker = true, e.Broker.Stats()
		r.store, r.stored = e.Broker.StoreStats()
		r.storeOK = r.stored && e.Broker.StoreHealth() == nil
		if hs, ok := e.Broker.Hosts(); ok && broker.WebBuilt {
			r.hosts = &hs
		}
	}
	return r
}

func (e *Exporter) readBridge(ctx context.Context) reading {
	r := reading{
		bridge: true, snap: e.Stats.Snapshot(), size: map[string]int64{}, capacity: map[string]int64{},
		connected: e.Stats.Connected.Load(), subscribed: e.Stats.Subscribed.Load(),
		reconnects: e.Stats.Reconnects.Load(), messages: e.Stats.Messages.Load(),
		queue: e.Stats.QueueDepth.Load(), syncs: e.Stats.Syncs.Load(), setsEmptied: e.Stats.SetsEmptied.Load(),
		apply: e.Stats.ApplyLatency(), lost: map[string]int64{},
	}
	for root, why := range e.Stats.ListsLost() {
		r.lost[root] = b2i(why != "")
	}
	for _, s := range e.Sets {
		if info, err := e.Backend.Info(ctx, s); err == nil {
			r.capacity[s] = int64(info.MaxElem)
			if info.Size >= 0 { // nftables cannot count cheaply
				r.size[s] = int64(info.Size)
			}
		}
	}
	if e.Drops != nil {
		r.drops, _ = e.Drops(ctx) // a failed read leaves the series out
	}
	if sensorBuilt {
		r.sensor = e.sensorCounts()
	}
	return r
}

// A metric's name and help; its type follows from the name, as Prometheus
// names them: counters end in _total, the rest are gauges. Tables rather
// than a call each: the router builds count every byte.
type desc struct{ name, help string }

var (
	bridgeScalars = [...]desc{
		{"vallum_mqtt_connected", "1 while connected to the MQTT broker."},
		{"vallum_mqtt_subscribed", "1 once subscribed and synced on the current connection."},
		{"vallum_mqtt_reconnects_total", "Reconnections to the MQTT broker."},
		{"vallum_mqtt_messages_total", "MQTT messages received."},
		{"vallum_queue_depth", "Messages waiting for the kernel."},
		{"vallum_syncs_total", "Completed reconciliations with the broker's state."},
		{"vallum_sets_emptied_total", "Sets found emptied in place (flushed, or re-created by a firewall reload) and resynced."},
	}
	brokerScalars = [...]desc{
		{"vallum_broker_clients", "Clients connected to the embedded broker."},
		{"vallum_broker_messages_received_total", "Messages the embedded broker received."},
		{"vallum_broker_messages_sent_total", "Messages the embedded broker sent."},
		{"vallum_broker_messages_dropped_total", "Messages the embedded broker dropped."},
		{"vallum_broker_retained", "Retained messages (ban states) the embedded broker holds."},
	}
	storeScalars = [...]desc{
		{"vallum_broker_store_ok", "1 while the embedded broker's store writes."},
		{"vallum_broker_store_write_errors_total", "Store writes and fsyncs that failed."},
		{"vallum_broker_store_refused_total", "Publishes refused because the store could not write."},
		{"vallum_broker_store_damaged_records", "Damaged records skipped when the store was loaded."},
		{"vallum_broker_store_bytes", "Size of the store file."},
		{"vallum_broker_journal_entries", "Burst messages the hub's journal holds until a cut holds them."},
		{"vallum_broker_journal_skipped", "Journal entries found unreadable at start (damaged records are in vallum_broker_store_damaged_records)."},
		{"vallum_broker_journal_replayed", "Bans taken again from the journal at start: a hub stopped before the cut of a burst."},
	}
	hubScalars = [...]desc{
		{"vallum_hub_hosts_out_of_sync", "Online hosts whose last status says not synced, or is older than 3 minutes (3 missed statuses)."},
		{"vallum_hub_hosts_untracked_total", "Statuses of new hosts the hub did not track: it tracks at most 100,000."},
	}
)

func write(w io.Writer, r reading) {
	if r.bridge {
		writeBridge(w, r)
	}
	if r.embedded {
		writeBroker(w, r)
	}
}

func writeBridge(w io.Writer, r reading) {
	family(w, "vallum_adds_total", "Entries added to kernel sets.", "set", r.snap.Adds)
	family(w, "vallum_dels_total", "Entries deleted from kernel sets.", "set", r.snap.Dels)
	family(w, "vallum_refused_total", "Input refused before the kernel, by reason.", "reason", r.snap.Refused)
	family(w, "vallum_errors_total", "Ops the kernel refused or could not apply, by kind.", "kind", r.snap.Errors)
	family(w, "vallum_set_entries", "Entries in the kernel set.", "set", r.size)
	family(w, "vallum_set_capacity", "Capacity of the kernel set (0: no fixed limit).", "set", r.capacity)
	family(w, "vallum_list_state_lost", "1 while the broker's list is not the one last synced (no keeper record, or another epoch): its bans are kept, none removed.", "list", r.lost)
	scalars(w, bridgeScalars[:], b2i(r.connected), b2i(r.subscribed), r.reconnects, r.messages, r.queue, r.syncs, r.setsEmptied)
	histogram(w, "vallum_apply_seconds", "Time to apply one batch to the kernel.", r.apply)
	if r.drops != nil {
		drops(w, r.drops)
	}
	if sensorBuilt {
		sensor(w, r.sensor)
	}
}

func writeBroker(w io.Writer, r reading) {
	st := r.broker
	scalars(w, brokerScalars[:], st.ClientsConnected, st.MessagesReceived, st.MessagesSent, st.MessagesDropped, st.Retained)
	family(w, "vallum_broker_refused_total", "What the embedded broker refused (logins, publishes, subscriptions, connections over a limit), by reason.", "reason", st.Refused)
	header(w, "vallum_keeper_reports_held_total", "Reports the keeper held, not applied: their reporter was over its limit (--policy LIST:limit=).")
	for _, h := range st.ReportsHeld {
		fmt.Fprintf(w, "vallum_keeper_reports_held_total{list=%q,reporter=%q} %d\n", h.List, h.Reporter, h.Reports)
	}
	if st.KeeperBans != nil {
		family(w, "vallum_keeper_bans", "Live bans of the list in the hub's keeper's view: what the list holds, beside what each host holds (vallum_hub_host_entries_min).", "list", st.KeeperBans)
	}
	if ss := r.store; r.stored {
		scalars(w, storeScalars[:], b2i(r.storeOK), ss.WriteErrors, ss.Refused, int64(ss.Loaded.Records), ss.FileBytes,
			ss.JournalHeld, ss.JournalSkipped, ss.JournalReplayed)
	}
	if broker.WebBuilt && r.hosts != nil { // (the router builds have no hosts' view: not even the calls)
		hubHosts(w, r.hosts)
	}
}

// hubHosts writes the hub's view of its hosts, from their statuses.
func hubHosts(w io.Writer, h *broker.HostsStats) {
	family(w, "vallum_hub_hosts", "Hosts the hub knows from their retained status, by state: online, or offline (said goodbye, or their will said it).", "state",
		map[string]int64{"online": h.Online, "offline": h.Offline})
	scalars(w, hubScalars[:], h.OutOfSync, h.Untracked)
	lo, hi := map[string]int64{}, map[string]int64{}
	for _, l := range h.Lists {
		if l.Hosts > 0 {
			lo[l.List], hi[l.List] = l.Min, l.Max
		}
	}
	family(w, "vallum_hub_host_entries_min", "Fewest entries of the list an online host holds in its sets (its last status): far below the max, a host lacks bans.", "list", lo)
	family(w, "vallum_hub_host_entries_max", "Most entries of the list an online host holds in its sets (its last status).", "list", hi)
}

// header writes a metric's HELP and TYPE lines.
func header(w io.Writer, name, help string) {
	typ := "gauge"
	if strings.HasSuffix(name, "_total") {
		typ = "counter"
	}
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func family(w io.Writer, name, help, label string, values map[string]int64) {
	header(w, name, help)
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s{%s=%q} %d\n", name, label, k, values[k])
	}
}

// scalars writes one metric of d per value, in order.
func scalars(w io.Writer, d []desc, values ...int64) {
	for i, v := range values {
		header(w, d[i].name, d[i].help)
		fmt.Fprintf(w, "%s %d\n", d[i].name, v)
	}
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
