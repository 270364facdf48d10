package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

const (
	port   = 1883
	list   = "blacklist"
	window = 1000 // QoS 1 messages in flight from the publisher
)

// subject is one host where a bridge (vallum, the naive pipeline or
// vallumd) applies blacklist/add messages from its broker to its ipset.
type subject struct {
	name string
	h    *lab.Host
	pub  mqtt.Client
	w    *watcher
	proc *lab.Proc // the bridge process
}

func (s *subject) close() {
	if s.pub != nil {
		s.pub.Disconnect(100)
	}
	if s.w != nil {
		s.w.close()
	}
}

// newSubject starts mosquitto on the host's loopback, then start (the
// bridge), then connects the publisher and the set watcher.
func newSubject(l *lab.Lab, dir, name string, start func(h *lab.Host) (*lab.Proc, error)) (*subject, error) {
	h, err := l.AddHost(name)
	if err != nil {
		return nil, err
	}
	s := &subject{name: name, h: h}
	if _, err := h.StartMosquitto(dir, port, false); err != nil {
		return nil, err
	}
	if s.proc, err = start(h); err != nil {
		return nil, err
	}
	if s.pub, err = connect(h, port, "bench-"+name); err != nil {
		return s, err
	}
	s.w, err = newWatcher(h)
	return s, err
}

// waitReady publishes a probe address until the bridge has it in the set:
// the naive pipeline and vallumd say nothing when they have subscribed.
func (s *subject) waitReady(probe netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s.proc.Exited() {
			return fmt.Errorf("%s exited: %v\n%s", s.proc.Name, s.proc.Err(), s.proc.Output())
		}
		s.pub.Publish(list+"/add", 1, false, probe.String()).WaitTimeout(time.Second)
		if _, _, err := s.w.waitSize(list, 1, time.Now().Add(300*time.Millisecond), 5*time.Millisecond); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s: the probe address never reached the set in %v", s.name, timeout)
}

// throughput publishes n addresses, per addresses per message, and
// returns addresses per second from the first publish until the set holds
// them all. Every address is new, so the set must grow by exactly n:
// anything less at the deadline is reported as lost.
func (s *subject) throughput(a *addrs, topic string, n, per int, timeout time.Duration) (float64, error) {
	base := s.w.size(topic)
	if base < 0 {
		return 0, fmt.Errorf("set %s missing on %s", topic, s.h.Name)
	}
	msgs := (n + per - 1) / per
	batches := make([][]byte, msgs)
	var last netip.Addr
	for i := range batches {
		as := a.take(min(per, n-i*per))
		batches[i], last = lines(as), as[len(as)-1]
	}
	deadline := time.Now().Add(timeout)
	start := time.Now()
	perr := make(chan error, 1)
	go func() {
		perr <- publishAll(s.pub, msgs, window, deadline, func(i int) (string, []byte, bool) {
			return topic + "/add", batches[i], false
		})
	}()
	end, got, werr := s.w.waitFor(topic, last, base+n, deadline, time.Millisecond)
	if err := errors.Join(<-perr, werr); err != nil {
		return 0, fmt.Errorf("%s: %d of %d addresses in the set: %w", s.name, got-base, n, err)
	}
	if got != base+n {
		return 0, fmt.Errorf("%s: set grew by %d, want %d", s.name, got-base, n)
	}
	return float64(n) / end.Sub(start).Seconds(), nil
}

// latency publishes n single bans at a steady rate, one message each, and
// measures for each the time from its publish until the kernel set holds
// it. A poller reads the set's size over netlink every ~50 µs; as bans are
// applied in order, the set's k-th new entry is the k-th ban. The schedule
// does not wait for earlier bans, so a slow one cannot hide the next.
// The topic's set should hold few entries: reading a hash set's size costs
// the kernel time in proportion to it.
func (s *subject) latency(a *addrs, topic string, n, rate int, timeout time.Duration) ([]time.Duration, error) {
	base := s.w.size(topic)
	if base < 0 {
		return nil, fmt.Errorf("set %s missing on %s", topic, s.h.Name)
	}
	// One ban first, not counted: the steady state is what is measured,
	// not the first message on a fresh connection and set.
	warm := a.take(1)[0]
	s.pub.Publish(topic+"/add", 1, false, warm.String()).WaitTimeout(5 * time.Second)
	if _, _, err := s.w.waitSize(topic, base+1, time.Now().Add(10*time.Second), time.Millisecond); err != nil {
		return nil, fmt.Errorf("warm-up ban: %w", err)
	}
	base++
	as := a.take(n)
	sent := make([]atomic.Int64, n)
	lat := make([]time.Duration, 0, n)
	deadline := time.Now().Add(timeout)
	polled := make(chan error, 1)
	go func() {
		for len(lat) < n {
			size := s.w.size(topic)
			now := time.Now().UnixNano()
			for len(lat) < n && size-base > len(lat) {
				lat = append(lat, time.Duration(now-sent[len(lat)].Load()))
			}
			if time.Now().After(deadline) {
				polled <- fmt.Errorf("%d of %d bans in the set at the deadline", len(lat), n)
				return
			}
			time.Sleep(50 * time.Microsecond)
		}
		polled <- nil
	}()
	every := time.Second / time.Duration(rate)
	start := time.Now()
	var toks []mqtt.Token
	for i, ad := range as {
		if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
			time.Sleep(d)
		}
		if time.Now().After(deadline) {
			break
		}
		sent[i].Store(time.Now().UnixNano())
		toks = append(toks, s.pub.Publish(topic+"/add", 1, false, ad.String()))
	}
	err := <-polled
	for _, t := range toks {
		if t.WaitTimeout(time.Until(deadline)+time.Second) && t.Error() != nil {
			err = errors.Join(err, t.Error())
		}
	}
	slow := 0
	for i, d := range lat {
		if d > 5*time.Millisecond {
			if slow == 0 {
				fmt.Fprintf(os.Stderr, "bench: latency: first ban over 5 ms is #%d of %d (%v)\n", i, n, d)
			}
			slow++
		}
	}
	fmt.Fprintf(os.Stderr, "bench: latency: %d of %d bans over 5 ms\n", slow, len(lat))
	slices.Sort(lat)
	return lat, err
}

// quantile of sorted durations, in milliseconds.
func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// lateJoin publishes n retained ban states to a fresh broker, then starts
// vallum on that host, and returns the time from its start until the set
// holds all n, and vallum's resident memory then.
func lateJoin(l *lab.Lab, dir, bin string, a *addrs, n int, timeout time.Duration) (time.Duration, int64, error) {
	h, err := l.AddHost("join")
	if err != nil {
		return 0, 0, err
	}
	if _, err := h.StartMosquitto(dir, port, false); err != nil {
		return 0, 0, err
	}
	pub, err := connect(h, port, "bench-join")
	if err != nil {
		return 0, 0, err
	}
	defer pub.Disconnect(100)
	as := a.take(n)
	now := time.Now()
	state := wire.EncodeState(wire.State{At: now, Expires: now.Add(24 * time.Hour), Reason: "bench"})
	deadline := now.Add(timeout)
	err = publishAll(pub, n, window, deadline, func(i int) (string, []byte, bool) {
		return wire.StateTopic(list, netip.PrefixFrom(as[i], 32)), state, true
	})
	if err != nil {
		return 0, 0, fmt.Errorf("retained states: %w", err)
	}
	w, err := newWatcher(h)
	if err != nil {
		return 0, 0, err
	}
	defer w.close()
	start := time.Now()
	v, err := h.StartVallumNoWait(dir, bin, "-h", "127.0.0.1", "-t", list)
	if err != nil {
		return 0, 0, err
	}
	end, got, err := w.waitSize(list, n, start.Add(timeout), 5*time.Millisecond)
	if err != nil {
		return 0, 0, fmt.Errorf("late join: %d of %d: %w\n%s", got, n, err, v.Output())
	}
	took := end.Sub(start)
	// Memory once the sync is over, not mid-way. "msg=synced" is logged
	// when the reconciliation ends; "subscribed and synced" is not logged
	// when a sync marker's PUBACK was slow (see the report on sync.go).
	if err := v.WaitLog("msg=synced", timeout); err != nil {
		return took, 0, err
	}
	rss, err := v.RSS()
	return took, rss, err
}
