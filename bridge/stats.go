package bridge

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts what the bridge does, for metrics and health checks. All
// fields are safe for concurrent use.
type Stats struct {
	Connected  atomic.Bool
	Subscribed atomic.Bool // subscribed and synced on the current connection
	Reconnects atomic.Int64
	Messages   atomic.Int64 // MQTT messages received
	QueueDepth atomic.Int64
	Syncs      atomic.Int64 // completed reconciliations
	// SetsEmptied counts sets found to have lost vallum's entries while
	// they still existed (a flush or a re-create by a firewall reload).
	SetsEmptied atomic.Int64

	mu      sync.Mutex
	adds    map[string]int64 // per set
	dels    map[string]int64
	refused map[string]int64 // per reason
	errors  map[string]int64 // per kind
	apply   Histogram
	lost    map[string]string // per list root synced: why it is lost, or ""
	sync    syncStats         // the last sync, for the host's status
}

// SetListLost records why the last sync of list root found the broker's
// list lost (epoch.go), or "" when it did not. The bridge calls it.
func (s *Stats) SetListLost(root, why string) {
	s.mu.Lock()
	if s.lost == nil {
		s.lost = map[string]string{}
	}
	s.lost[root] = why
	s.mu.Unlock()
}

// ListsLost returns, for each list synced, why its last sync found the
// broker's list lost and kept its bans, or "" when it did not.
func (s *Stats) ListsLost() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.lost)
}

func (s *Stats) inc(m *map[string]int64, key string, n int64) {
	s.mu.Lock()
	if *m == nil {
		*m = map[string]int64{}
	}
	(*m)[key] += n
	s.mu.Unlock()
}

// Snapshot is a copy of the per-set and per-reason counters.
type Snapshot struct {
	Adds, Dels, Refused, Errors map[string]int64
}

// Snapshot copies the keyed counters.
func (s *Stats) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Snapshot{Adds: maps.Clone(s.adds), Dels: maps.Clone(s.dels), Refused: maps.Clone(s.refused), Errors: maps.Clone(s.errors)}
}

// ApplyBuckets are the upper bounds, in seconds, of the apply latency
// histogram: one backend batch, from 100 µs to 1 s.
var ApplyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// Histogram is a cumulative latency histogram over ApplyBuckets.
type Histogram struct {
	Counts []int64 // per bucket, cumulative, as Prometheus wants them
	Count  int64
	Sum    float64
}

func (s *Stats) observeApply(d time.Duration) {
	sec := d.Seconds()
	s.mu.Lock()
	if s.apply.Counts == nil {
		s.apply.Counts = make([]int64, len(ApplyBuckets))
	}
	for i, ub := range ApplyBuckets {
		if sec <= ub {
			s.apply.Counts[i]++
		}
	}
	s.apply.Count++
	s.apply.Sum += sec
	s.mu.Unlock()
}

// ApplyLatency returns a copy of the apply latency histogram.
func (s *Stats) ApplyLatency() Histogram {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.apply
	h.Counts = append([]int64(nil), s.apply.Counts...)
	if h.Counts == nil {
		h.Counts = make([]int64, len(ApplyBuckets))
	}
	return h
}
