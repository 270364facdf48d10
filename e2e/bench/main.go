// Command bench measures vallum on this machine, side by side with the
// naive pipeline people script today (mosquitto_sub | xargs ipset add),
// `ipset restore` of the same addresses (the kernel apply baseline) and,
// when given, a vallumd binary (../shared/peers/build-vallumd.sh builds
// one): kernel apply rate, end-to-end throughput, publish-to-kernel
// latency, late-join sync time and memory. It runs as root; everything
// happens in network namespaces of its own, on loopback.
//
//	go run ./e2e/bench            # full sizes, a few minutes
//	go run ./e2e/bench -small     # CI sizes, under a minute
//	go run ./e2e/bench -small -compact 1000000   # CI sizes and the 1m late joins
//	go run ./e2e/bench -only compact             # the 1m late joins alone
//	go run ./e2e/bench -only hubjoin             # the hub's memory while hosts join, alone
//
// It prints a table, then as its last line one JSON object of the figures.
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

type config struct {
	apply, nftApply, single, rounds, batch, perMsg int
	lat, latRate, sync, naive, vallumdN            int
	compact                                        int
	hubJoin, hubJoiners                            int
	compactKeeper, compactSettle                   bool
	only, compactOn, compactFeed                   string
	vallumd                                        string
	phase                                          time.Duration
	soak                                           time.Duration
	soakRate                                       int
	keep                                           bool
}

func parseFlags() config {
	var c config
	small := flag.Bool("small", false, "CI sizes (10k and so on): finishes in under a minute")
	flag.IntVar(&c.apply, "apply", 1_000_000, "addresses for the ipset kernel apply rate (batches of 10k)")
	flag.IntVar(&c.nftApply, "nft-apply", 200_000, "addresses for the nftables kernel apply rate (batches of 10k)")
	flag.IntVar(&c.single, "single", 100_000, "addresses end to end, one per message")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds of the one-per-message comparison (vallum and the broker alone in turn; medians)")
	flag.IntVar(&c.batch, "batch", 1_000_000, "addresses end to end, -per per message")
	flag.IntVar(&c.perMsg, "per", 1000, "addresses per message for -batch")
	flag.IntVar(&c.lat, "lat", 5000, "bans for the latency measurement")
	flag.IntVar(&c.latRate, "lat-rate", 1000, "bans per second for the latency measurement")
	flag.IntVar(&c.sync, "sync", 100_000, "retained bans for the late-join measurement")
	flag.IntVar(&c.compact, "compact", 1_000_000, "bans of the compact list (chunks) for the late join from the embedded hub and mosquitto, keys sync_1m_*; 0: skip (the -small default)")
	flag.IntVar(&c.hubJoin, "hub-join", 100_000, "bans the hub holds while -hub-joiners hosts late-join, one after the other, for its peak RSS (key hub_rss_100k_join_mb); 0: skip (the -small default)")
	flag.IntVar(&c.hubJoiners, "hub-joiners", 3, "hosts that late-join the hub's list for -hub-join")
	flag.BoolVar(&c.compactKeeper, "compact-keeper", true, "the list's real keeper cuts the compact list from events; false: the benchmark publishes chunks itself")
	flag.BoolVar(&c.compactSettle, "compact-settle", true, "with -compact-keeper, vallum joins once the keeper is done with the million (its list still for 12 s); false: once it has cut 99 %, while it still deletes the per-ban states it folded in")
	flag.StringVar(&c.compactFeed, "compact-feed", "states", "with -compact-keeper, how the million reaches the keeper: states (one retained per-ban state each, as vallum ban makes them) or events (ROOT/add of 1,000 lines, as vallum import sends them)")
	flag.StringVar(&c.compactOn, "compact-on", "embedded,mosquitto", "the brokers of the compact late joins, comma separated")
	flag.StringVar(&c.only, "only", "", "run one part alone: compact (the late joins of -compact; its default then stays 1,000,000 even with -small), or hubjoin (-hub-join)")
	flag.IntVar(&c.naive, "naive", 2000, "messages for the naive pipeline (it manages ~500/s)")
	flag.IntVar(&c.vallumdN, "vallumd-n", 100_000, "messages for vallumd in each of -rounds (as -single for vallum)")
	flag.StringVar(&c.vallumd, "vallumd", "", "path of a vallumd binary to compare with (skipped when empty)")
	flag.DurationVar(&c.phase, "phase-timeout", 120*time.Second, "time limit of each measurement")
	flag.DurationVar(&c.soak, "soak", 60*time.Second, "length of the steady run that checks vallum's memory stays flat (0: skip)")
	flag.IntVar(&c.soakRate, "soak-rate", 2000, "messages per second during the soak")
	flag.BoolVar(&c.keep, "keep", false, "keep the log folder")
	flag.Parse()
	if c.compactFeed != "states" && c.compactFeed != "events" {
		fmt.Fprintf(os.Stderr, "bench: -compact-feed %q: states or events\n", c.compactFeed)
		os.Exit(2)
	}
	if c.only != "" && c.only != "compact" && c.only != "hubjoin" {
		fmt.Fprintf(os.Stderr, "bench: -only %q: the parts that run alone are compact and hubjoin\n", c.only)
		os.Exit(2)
	}
	if *small {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(p *int, name string, v int) {
			if !set[name] {
				*p = v
			}
		}
		def(&c.apply, "apply", 50_000)
		def(&c.nftApply, "nft-apply", 20_000)
		def(&c.single, "single", 10_000)
		def(&c.batch, "batch", 100_000)
		def(&c.lat, "lat", 1000)
		def(&c.sync, "sync", 10_000)
		if c.only != "compact" {
			def(&c.compact, "compact", 0)
		}
		if c.only != "hubjoin" {
			def(&c.hubJoin, "hub-join", 0)
		}
		def(&c.naive, "naive", 300)
		def(&c.vallumdN, "vallumd-n", 10_000)
		if !set["phase-timeout"] {
			c.phase = 30 * time.Second
		}
		if !set["soak"] {
			c.soak = 6 * time.Second
		}
	}
	return c
}

func main() {
	c := parseFlags()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (network namespaces and kernel sets)")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "vallum-bench")
	if err != nil {
		fatal(err)
	}
	l, err := lab.New()
	if err != nil {
		fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; l.Close(); fmt.Fprintln(os.Stderr, "bench: interrupted; logs in", dir); os.Exit(130) }()
	r := run(c, l, dir)
	l.Close()
	r.print(os.Stdout, c)
	if len(r.errs) > 0 || c.keep {
		fmt.Fprintln(os.Stderr, "bench: logs kept in", dir)
	} else {
		os.RemoveAll(dir)
	}
	if len(r.errs) > 0 {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// probe is the address the naive pipeline and vallumd are warmed up with;
// outside the range addrs hands out.
var probe = netip.MustParseAddr("198.18.0.1")
