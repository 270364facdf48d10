// Package metrics serves the daemon's Prometheus /metrics and its /healthz,
// in the text format written by hand: a few dozen lines of counters do not
// need the client library, and a router saves its size.
package metrics

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

// Exporter reads the bridge's counters, the kernel sets and, when it is
// embedded, the broker.
type Exporter struct {
	Stats   *bridge.Stats // nil: no bridge (vallum broker), the broker's figures only
	Backend bridge.Backend
	Sets    []string
	Broker  *broker.Broker // nil when the broker is not embedded
	// Drops, when set, reads what vallum's own drop rules dropped (the
	// nft backend's --nft-rules).
	Drops func(ctx context.Context) ([]Drop, error)
	// Sensor, when set, reads the scan sensor's counters (--sensor).
	Sensor func() SensorCounts
}

// SensorCounts are the scan sensor's counters.
type SensorCounts struct {
	Packets, Bans, Overload, Tracked int64
}

// Drop is what vallum's drop rules dropped for one list and family.
type Drop struct {
	List, Family   string // family: ipv4 or ipv6
	Packets, Bytes uint64
	_              [0]func() // not comparable: no equality function in the router builds
}

// Handler serves /metrics and /healthz.
func (e *Exporter) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		write(w, e.read(r.Context()))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := e.Health(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// Health says whether the broker connection and every kernel set are
// usable, and whether a list's state was found lost.
func (e *Exporter) Health(ctx context.Context) error {
	var errs []error
	if e.Stats != nil {
		errs = e.bridgeHealth(ctx)
	}
	if e.Broker != nil {
		if err := e.Broker.StoreHealth(); err != nil {
			errs = append(errs, fmt.Errorf("embedded broker store, publishes refused: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (e *Exporter) bridgeHealth(ctx context.Context) []error {
	var errs []error
	if !e.Stats.Connected.Load() {
		errs = append(errs, errors.New("not connected to the MQTT broker"))
	} else if !e.Stats.Subscribed.Load() {
		errs = append(errs, errors.New("connected but not (yet) subscribed and synced: see the log for the broker's refusal"))
	}
	var lost []string
	for root, why := range e.Stats.ListsLost() {
		if why != "" {
			lost = append(lost, "list "+root+": "+why+"; its bans are kept, none removed: see the log")
		}
	}
	sort.Strings(lost)
	for _, l := range lost {
		errs = append(errs, errors.New(l))
	}
	for _, s := range e.Sets {
		if _, err := e.Backend.Info(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("set %s: %w", s, err))
		}
	}
	return errs
}

// Serve binds addr now (so a bad address is a start-up error) and serves
// until ctx is done.
func (e *Exporter) Serve(ctx context.Context, g *errgroup.Group, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics: %w", err)
	}
	srv := &http.Server{Handler: e.Handler(), ReadHeaderTimeout: 5 * time.Second}
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
