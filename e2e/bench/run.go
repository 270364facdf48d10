package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/lab"
)

// results holds each figure, nil when its measurement failed or was skipped.
type results struct {
	ApplyPerS            *float64 `json:"apply_per_s"`
	IpsetRestorePerS     *float64 `json:"ipset_restore_per_s"`
	ApplyVsRestore       *float64 `json:"apply_vs_ipset_restore"`
	NftApplyPerS         *float64 `json:"nft_apply_per_s"`
	E2EBatchPerS         *float64 `json:"e2e_batch_per_s"`
	E2ESinglePerS        *float64 `json:"e2e_single_per_s"`
	LatencyP50Ms         *float64 `json:"latency_p50_ms"`
	LatencyP99Ms         *float64 `json:"latency_p99_ms"`
	LatencyMaxMs         *float64 `json:"latency_max_ms"`
	Sync100kS            *float64 `json:"sync_100k_s"`
	SyncN                int      `json:"sync_n"`
	Sync1mEmbeddedS      *float64 `json:"sync_1m_embedded_s,omitempty"`
	Sync1mMosquittoS     *float64 `json:"sync_1m_mosquitto_s,omitempty"`
	HubRSS1mMB           *float64 `json:"hub_rss_1m_mb,omitempty"`
	HubRSS100kJoinMB     *float64 `json:"hub_rss_100k_join_mb,omitempty"`
	HubRSS100kMB         *float64 `json:"hub_rss_100k_mb,omitempty"`
	HubJoinN             int      `json:"hub_join_n,omitempty"`
	CompactN             int      `json:"compact_n,omitempty"`
	CompactKeeper        bool     `json:"compact_keeper,omitempty"`
	CompactSettled       bool     `json:"compact_settled,omitempty"`
	CompactFeed          string   `json:"compact_feed,omitempty"`
	RSSMB                *float64 `json:"rss_mb"`
	RSSEventsMB          *float64 `json:"rss_events_mb"`
	BrokerSinglePerS     *float64 `json:"broker_single_per_s"`
	BrokerSubSinglePerS  *float64 `json:"broker_sub_single_per_s"`
	SingleVsBroker       float64  `json:"e2e_single_vs_broker"`
	SingleVsMosquittoSub float64  `json:"e2e_single_vs_mosquitto_sub"`
	RSSIdleMB            *float64 `json:"rss_idle_mb"`
	RSSSoakStartMB       *float64 `json:"rss_soak_start_mb,omitempty"`
	RSSSoakEndMB         *float64 `json:"rss_soak_end_mb,omitempty"`
	RSSSoakMaxMB         *float64 `json:"rss_soak_max_mb,omitempty"`
	NaiveSinglePerS      *float64 `json:"naive_e2e_single_per_s"`
	VallumdSingle        *float64 `json:"vallumd_e2e_single_per_s,omitempty"`
	SingleVsVallumd      *float64 `json:"e2e_single_vs_vallumd,omitempty"`
	Errors               []string `json:"errors,omitempty"`

	errs []error
}

func (r *results) set(p **float64, v float64, err error, what string) {
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s: %w", what, err))
		r.Errors = append(r.Errors, what+": "+firstLine(err.Error()))
		fmt.Fprintf(os.Stderr, "bench: %s: %v\n", what, err)
		return
	}
	*p = &v
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// run measures everything in order; a failed measurement is reported and
// the others still run.
func run(c config, l *lab.Lab, dir string) *results {
	r := &results{SyncN: c.sync}
	a := &addrs{}
	step := func(s string) { fmt.Fprintf(os.Stderr, "bench: %s (%s)\n", s, time.Now().Format("15:04:05")) }
	if c.only != "" {
		step("building vallum")
		bin, err := lab.BuildVallum(dir)
		if err != nil {
			r.set(&r.Sync1mEmbeddedS, 0, err, "build")
			return r
		}
		if c.only == "compact" {
			compactJoins(c, l, dir, bin, a, r, step)
		} else {
			hubJoin(c, l, dir, bin, a, r, step)
		}
		return r
	}

	step("kernel apply rates")
	k, err := l.AddHost("kernel")
	if err != nil {
		r.set(&r.ApplyPerS, 0, err, "lab")
		return r
	}
	v, restore, err := ipsetApply(k, a, c.apply, time.Now().Add(c.phase))
	r.set(&r.ApplyPerS, v, err, "ipset apply")
	r.set(&r.IpsetRestorePerS, restore, err, "ipset restore")
	r.ApplyVsRestore = ratio(r.ApplyPerS, r.IpsetRestorePerS)
	v, err = nftApply(k, a, c.nftApply, time.Now().Add(c.phase))
	r.set(&r.NftApplyPerS, v, err, "nft apply")

	step("building vallum")
	bin, err := lab.BuildVallum(dir)
	if err != nil {
		r.set(&r.E2ESinglePerS, 0, err, "build")
		return r
	}
	step("vallum end to end")
	vallum(c, l, dir, bin, a, r)

	step("late join")
	took, rss, err := lateJoin(l, dir, bin, a, c.sync, c.phase)
	r.set(&r.Sync100kS, took.Seconds(), err, "late join")
	r.set(&r.RSSMB, mb(rss), err, "rss after late join")

	compactJoins(c, l, dir, bin, a, r, step)

	hubJoin(c, l, dir, bin, a, r, step)

	step("naive pipeline")
	v, err = naive(l, dir, a, c.naive, c.phase)
	r.set(&r.NaiveSinglePerS, v, err, "naive pipeline")
	if c.vallumd != "" {
		step("vallumd")
		v, err = vallumd(l, dir, c.vallumd, a, c.vallumdN, c.rounds, c.phase)
		r.set(&r.VallumdSingle, v, err, "vallumd")
		r.SingleVsVallumd = ratio(r.E2ESinglePerS, r.VallumdSingle)
	}
	return r
}

// hubJoin measures the hub's memory while hosts join, when asked.
func hubJoin(c config, l *lab.Lab, dir, bin string, a *addrs, r *results, step func(string)) {
	if c.hubJoin <= 0 {
		return
	}
	r.HubJoinN = c.hubJoin
	step("hub memory while hosts join")
	peak, before, err := hubJoinRSS(l, dir, bin, a, c.hubJoin, c.hubJoiners, c.phase)
	r.set(&r.HubRSS100kJoinMB, mb(peak), err, "hub rss while hosts join")
	r.set(&r.HubRSS100kMB, mb(before), err, "hub rss holding the list before the joins")
}

// compactJoins measures the late joins of the compact list, when asked.
func compactJoins(c config, l *lab.Lab, dir, bin string, a *addrs, r *results, step func(string)) {
	if c.compact <= 0 {
		return
	}
	r.CompactN, r.CompactKeeper, r.CompactSettled = c.compact, c.compactKeeper, c.compactKeeper && c.compactSettle
	if c.compactKeeper {
		r.CompactFeed = c.compactFeed
	}
	if strings.Contains(c.compactOn, "embedded") {
		step("compact list late join, embedded hub")
		took, rss, err := compactJoin(l, dir, bin, a, cjoin{true, c.compactKeeper, c.compactSettle, c.compactFeed == "events"}, c.compact, c.phase)
		r.set(&r.Sync1mEmbeddedS, took.Seconds(), err, "compact late join, embedded hub")
		r.set(&r.HubRSS1mMB, mb(rss), err, "hub rss holding the compact list")
	}
	if strings.Contains(c.compactOn, "mosquitto") {
		step("compact list late join, mosquitto")
		took, _, err := compactJoin(l, dir, bin, a, cjoin{false, c.compactKeeper, c.compactSettle, c.compactFeed == "events"}, c.compact, c.phase)
		r.set(&r.Sync1mMosquittoS, took.Seconds(), err, "compact late join, mosquitto")
	}
}

// ratio is a/b, nil unless both were measured.
func ratio(a, b *float64) *float64 {
	if a == nil || b == nil || *b == 0 {
		return nil
	}
	v := *a / *b
	return &v
}

func vallum(c config, l *lab.Lab, dir, bin string, a *addrs, r *results) {
	s, err := newSubject(l, dir, "vallum", func(h *lab.Host) (*lab.Proc, error) {
		// One list per measurement: a set's size is read in time
		// proportional to it, and latency wants a small one.
		return h.StartVallum(dir, bin, "-h", "127.0.0.1", "-t", "single", "-t", "bulk", "-t", "lat", "-t", "soak")
	})
	if s != nil {
		defer s.close()
	}
	if err != nil {
		r.set(&r.E2ESinglePerS, 0, err, "vallum start")
		return
	}
	rss, err := s.proc.RSS()
	r.set(&r.RSSIdleMB, mb(rss), err, "vallum rss at start")
	one, err := s.singleRounds(dir, a, c.single, c.rounds, c.phase)
	r.set(&r.E2ESinglePerS, one.vallum, err, "1 per message")
	if err == nil {
		r.BrokerSinglePerS, r.BrokerSubSinglePerS = &one.paho, &one.mosquittoSub
		r.SingleVsBroker, r.SingleVsMosquittoSub = one.vallum/one.paho, one.vallum/one.mosquittoSub
	}
	rss, err = s.proc.RSS()
	r.set(&r.RSSEventsMB, mb(rss), err, "vallum rss after events")
	lat, err := s.latency(a, "lat", c.lat, c.latRate, c.phase)
	r.set(&r.LatencyP50Ms, quantile(lat, 0.50), err, "latency")
	r.set(&r.LatencyP99Ms, quantile(lat, 0.99), err, "latency p99")
	r.set(&r.LatencyMaxMs, quantile(lat, 1), err, "latency max")
	v, err := s.throughput(a, "bulk", c.batch, c.perMsg, c.phase)
	r.set(&r.E2EBatchPerS, v, err, fmt.Sprintf("vallum %d per message", c.perMsg))
	if c.soak > 0 {
		sr, err := s.soak(a, "soak", c.soak, c.soakRate)
		r.set(&r.RSSSoakStartMB, sr.startMB, err, "soak")
		r.set(&r.RSSSoakEndMB, sr.endMB, err, "soak end")
		r.set(&r.RSSSoakMaxMB, sr.maxMB, err, "soak max")
	}
}

// naive is what people script today: one `ipset add` process per address.
func naive(l *lab.Lab, dir string, a *addrs, n int, timeout time.Duration) (float64, error) {
	return other(l, dir, "naive", a, n, 1, timeout, func(h *lab.Host) (*lab.Proc, error) {
		return h.Start(dir, "sh", "-c", "mosquitto_sub -h 127.0.0.1 -p 1883 -q 1 -t "+list+"/add | xargs -n1 ipset -exist add "+list)
	})
}

// vallumd runs the given binary with its own command line, in rounds as
// vallum's one-per-message figure is taken: a single short round on a
// shared machine put the ratio anywhere from 0.86 to 1.86.
func vallumd(l *lab.Lab, dir, bin string, a *addrs, n, rounds int, timeout time.Duration) (float64, error) {
	return other(l, dir, "vallumd", a, n, rounds, timeout, func(h *lab.Host) (*lab.Proc, error) {
		return h.Start(dir, bin, "-h", "127.0.0.1", "-p", "1883", "-t", list)
	})
}

// other measures a bridge that is not vallum, one address per message,
// into a hash:ip set made for it (neither creates its set), once a probe
// address shows it has subscribed (neither says so): the median of rounds
// of n addresses each.
func other(l *lab.Lab, dir, name string, a *addrs, n, rounds int, timeout time.Duration, start func(h *lab.Host) (*lab.Proc, error)) (float64, error) {
	s, err := newSubject(l, dir, name, func(h *lab.Host) (*lab.Proc, error) {
		if _, err := h.Exec("ipset", "create", list, "hash:ip", "maxelem", strconv.Itoa(bridge.DefaultMaxElem)); err != nil {
			return nil, err
		}
		return start(h)
	})
	if s != nil {
		defer s.close()
	}
	if err != nil {
		return 0, err
	}
	if err := s.waitReady(probe, 20*time.Second); err != nil {
		return 0, err
	}
	var rates []float64
	for i := range rounds {
		v, err := s.throughput(a, list, n, 1, timeout)
		if err != nil {
			return 0, fmt.Errorf("round %d: %w", i+1, err)
		}
		rates = append(rates, v)
	}
	return median(rates), nil
}

// print writes the table, then the JSON object as the last line.
func (r *results) print(w io.Writer, c config) {
	f := func(p *float64, format string) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf(format, *p)
	}
	rows := [][4]string{
		{"measure", "vallum", "naive", "vallumd"},
		{"kernel apply, ipset, batches of 10k (addr/s)", f(r.ApplyPerS, "%.0f"), "", ""},
		{"kernel apply, `ipset restore` of the same addresses (addr/s)", f(r.IpsetRestorePerS, "%.0f"), "", ""},
		{"  vallum / ipset restore", f(r.ApplyVsRestore, "%.2f"), "", ""},
		{"kernel apply, nft, batches of 10k (addr/s)", f(r.NftApplyPerS, "%.0f"), "", ""},
		{"end to end, 1 addr/message, QoS 1 (addr/s)", f(r.E2ESinglePerS, "%.0f"), f(r.NaiveSinglePerS, "%.0f"), f(r.VallumdSingle, "%.0f")},
		{"  vallum / vallumd", f(r.SingleVsVallumd, "%.2f"), "", ""},
		{"broker alone, 1/message, to a paho subscriber in this process (msg/s)", f(r.BrokerSinglePerS, "%.0f"), "", ""},
		{"broker alone, 1/message, to mosquitto_sub (msg/s)", f(r.BrokerSubSinglePerS, "%.0f"), "", ""},
		{"  vallum / broker alone (paho; mosquitto_sub)", fmt.Sprintf("%.2f; %.2f", r.SingleVsBroker, r.SingleVsMosquittoSub), "", ""},
		{fmt.Sprintf("end to end, %d addr/message, QoS 1 (addr/s)", c.perMsg), f(r.E2EBatchPerS, "%.0f"), "", ""},
		{fmt.Sprintf("latency p50 at %d bans/s (ms)", c.latRate), f(r.LatencyP50Ms, "%.3f"), "", ""},
		{fmt.Sprintf("latency p99 at %d bans/s (ms)", c.latRate), f(r.LatencyP99Ms, "%.3f"), "", ""},
		{"latency max (ms)", f(r.LatencyMaxMs, "%.3f"), "", ""},
		{fmt.Sprintf("late join, %d retained bans (s)", c.sync), f(r.Sync100kS, "%.2f"), "", ""},
		{fmt.Sprintf("RSS after the late join of %d (MB)", c.sync), f(r.RSSMB, "%.1f"), "", ""},
		{fmt.Sprintf("late join, compact list of %d (%s), embedded hub (s)", c.compact, maker(c)), f(r.Sync1mEmbeddedS, "%.2f"), "", ""},
		{fmt.Sprintf("late join, compact list of %d (%s), mosquitto (s)", c.compact, maker(c)), f(r.Sync1mMosquittoS, "%.2f"), "", ""},
		{fmt.Sprintf("hub RSS holding the compact list of %d (MB)", c.compact), f(r.HubRSS1mMB, "%.1f"), "", ""},
		{fmt.Sprintf("hub RSS holding %d, before hosts join (MB)", c.hubJoin), f(r.HubRSS100kMB, "%.1f"), "", ""},
		{fmt.Sprintf("hub RSS peak while %d hosts join %d, in turn (MB)", c.hubJoiners, c.hubJoin), f(r.HubRSS100kJoinMB, "%.1f"), "", ""},
		{fmt.Sprintf("RSS after %d events (MB)", c.single*c.rounds), f(r.RSSEventsMB, "%.1f"), "", ""},
		{"RSS at start, synced, empty (MB)", f(r.RSSIdleMB, "%.1f"), "", ""},
		{fmt.Sprintf("RSS over a %v soak at %d msg/s: first fifth (MB)", c.soak, c.soakRate), f(r.RSSSoakStartMB, "%.1f"), "", ""},
		{"  last fifth (MB)", f(r.RSSSoakEndMB, "%.1f"), "", ""},
		{"  peak (MB)", f(r.RSSSoakMaxMB, "%.1f"), "", ""},
	}
	fmt.Fprintf(w, "sizes: apply %d, nft %d, single %d, batch %d, latency %d, sync %d, compact %d, naive %d, vallumd %d\n",
		c.apply, c.nftApply, c.single, c.batch, c.lat, c.sync, c.compact, c.naive, c.vallumdN)
	for _, row := range rows {
		fmt.Fprintf(w, "%-66s %12s %10s %10s\n", row[0], row[1], row[2], row[3])
	}
	b, _ := json.Marshal(r)
	fmt.Fprintln(w, string(b))
}

// maker says who cut the compact list.
func maker(c config) string {
	if c.compactKeeper && c.compactSettle {
		return "the keeper's, settled"
	}
	if c.compactKeeper {
		return "the keeper's, joined mid-burst of " + c.compactFeed
	}
	return fmt.Sprintf("+ %d, stand-in", compactDeltas)
}
