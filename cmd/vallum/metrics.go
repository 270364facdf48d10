package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/broker"
)

// metrics serves Prometheus text format by hand: a few dozen lines of
// counters do not need the client library, and a router saves its size.
type metrics struct {
	stats  *bridge.Stats
	be     backend
	sets   []string
	broker *broker.Broker // nil when the broker is not embedded
}

func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		m.write(r.Context(), w)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := m.health(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// health says whether the broker connection and every kernel set are usable.
func (m *metrics) health(ctx context.Context) error {
	var errs []error
	if !m.stats.Connected.Load() {
		errs = append(errs, errors.New("not connected to the MQTT broker"))
	} else if !m.stats.Subscribed.Load() {
		errs = append(errs, errors.New("connected but not (yet) subscribed and synced: see the log for the broker's refusal"))
	}
	for _, s := range m.sets {
		if _, err := m.be.Info(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("set %s: %w", s, err))
		}
	}
	if m.broker != nil {
		if err := m.broker.StoreHealth(); err != nil {
			errs = append(errs, fmt.Errorf("embedded broker store, publishes refused: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (m *metrics) write(ctx context.Context, w io.Writer) {
	snap := m.stats.Snapshot()
	family(w, "vallum_adds_total", "counter", "Entries added to kernel sets.", "set", snap.Adds)
	family(w, "vallum_dels_total", "counter", "Entries deleted from kernel sets.", "set", snap.Dels)
	family(w, "vallum_refused_total", "counter", "Input refused before the kernel, by reason.", "reason", snap.Refused)
	family(w, "vallum_errors_total", "counter", "Ops the kernel refused or could not apply, by kind.", "kind", snap.Errors)
	size, capacity := map[string]int64{}, map[string]int64{}
	for _, s := range m.sets {
		if info, err := m.be.Info(ctx, s); err == nil {
			capacity[s] = int64(info.MaxElem)
			if info.Size >= 0 { // nftables cannot count cheaply
				size[s] = int64(info.Size)
			}
		}
	}
	family(w, "vallum_set_entries", "gauge", "Entries in the kernel set.", "set", size)
	family(w, "vallum_set_capacity", "gauge", "Capacity of the kernel set (0: no fixed limit).", "set", capacity)
	gauge(w, "vallum_mqtt_connected", "gauge", "1 while connected to the MQTT broker.", b2i(m.stats.Connected.Load()))
	gauge(w, "vallum_mqtt_subscribed", "gauge", "1 once subscribed and synced on the current connection.", b2i(m.stats.Subscribed.Load()))
	gauge(w, "vallum_mqtt_reconnects_total", "counter", "Reconnections to the MQTT broker.", m.stats.Reconnects.Load())
	gauge(w, "vallum_mqtt_messages_total", "counter", "MQTT messages received.", m.stats.Messages.Load())
	gauge(w, "vallum_queue_depth", "gauge", "Messages waiting for the kernel.", m.stats.QueueDepth.Load())
	gauge(w, "vallum_syncs_total", "counter", "Completed reconciliations with the broker's state.", m.stats.Syncs.Load())
	histogram(w, "vallum_apply_seconds", "Time to apply one batch to the kernel.", m.stats.ApplyLatency())
	if m.broker != nil {
		st := m.broker.Stats()
		gauge(w, "vallum_broker_clients", "gauge", "Clients connected to the embedded broker.", st.ClientsConnected)
		gauge(w, "vallum_broker_messages_received_total", "counter", "Messages the embedded broker received.", st.MessagesReceived)
		gauge(w, "vallum_broker_messages_sent_total", "counter", "Messages the embedded broker sent.", st.MessagesSent)
		gauge(w, "vallum_broker_messages_dropped_total", "counter", "Messages the embedded broker dropped.", st.MessagesDropped)
		gauge(w, "vallum_broker_retained", "gauge", "Retained messages (ban states) the embedded broker holds.", st.Retained)
		family(w, "vallum_broker_refused_total", "counter", "What the embedded broker refused (logins, publishes, subscriptions, connections over a limit), by reason.", "reason", st.Refused)
		if ss, ok := m.broker.StoreStats(); ok {
			gauge(w, "vallum_broker_store_ok", "gauge", "1 while the embedded broker's store writes.", b2i(m.broker.StoreHealth() == nil))
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

// serveMetrics binds addr now (so a bad address is a start-up error) and
// serves until ctx is done.
func serveMetrics(ctx context.Context, g *errgroup.Group, addr string, m *metrics, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics: %w", err)
	}
	srv := &http.Server{Handler: m.handler(), ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics server: %w", err)
		}
		return nil
	})
	log.Info("metrics listening", "addr", ln.Addr().String())
	return nil
}

func setNames(lists []bridge.List) []string {
	var s []string
	for _, l := range lists {
		s = append(s, l.Set4, l.Set6)
	}
	return s
}
