// Command scale runs many vallum hosts in network namespaces on one broker
// (the embedded hub, or a three-node NATS cluster) and measures what grows
// with their number: the time for one ban to be in every host's kernel set
// (p50, p99, max over bans published at a steady rate), the time for every
// host to sync again after the broker restarts, and the broker's CPU and
// memory. As root, after .ci/install-deps:
//
//	go run ./e2e/scale -hosts 50            # embedded hub, then NATS
//	go run ./e2e/scale -hosts 10 -bans 200  # a quick run
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vallum/vallum/bridge/ipset"
	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

const root = "blacklist"

type config struct {
	hosts, bans, rate int
	phase             time.Duration
	nats, embedded    bool
}

func main() {
	var c config
	flag.IntVar(&c.hosts, "hosts", 50, "vallum hosts")
	flag.IntVar(&c.bans, "bans", 1000, "bans published at -rate for the latency")
	flag.IntVar(&c.rate, "rate", 50, "bans per second")
	flag.DurationVar(&c.phase, "phase-timeout", 3*time.Minute, "time limit of each phase")
	flag.BoolVar(&c.embedded, "embedded", true, "run on the embedded hub")
	flag.BoolVar(&c.nats, "nats", true, "run on a three-node NATS cluster (skipped without nats-server)")
	flag.Parse()
	if c.hosts < 1 || c.hosts > 200 || c.bans < 1 || c.bans > 100_000 || c.rate < 1 {
		fmt.Fprintln(os.Stderr, "scale: -hosts 1..200, -bans 1..100000, -rate >= 1")
		os.Exit(2)
	}
	code := 0
	for _, run := range []struct {
		name string
		on   bool
		fn   func(config) error
	}{{"embedded", c.embedded, runEmbedded}, {"nats", c.nats, runNATS}} {
		if !run.on {
			continue
		}
		if err := run.fn(c); err != nil {
			fmt.Fprintf(os.Stderr, "scale %s: %v\n", run.name, err)
			code = 1
		}
	}
	os.Exit(code)
}

// fleet is the hosts of one run, with a netlink watcher on each one's set.
type fleet struct {
	hosts    []*lab.Host
	procs    []*lab.Proc
	watchers []*ipset.Backend
}

// start runs vallum on every host with the -h value brokers(i) gives, and
// waits for each to sync.
func (f *fleet) start(l *lab.Lab, dir, bin string, n int, brokers func(i int) string) error {
	for i := range n {
		h, err := l.AddHost("h" + strconv.Itoa(i))
		if err != nil {
			return err
		}
		p, err := h.StartVallumNoWait(dir, bin, "-h", brokers(i), "-t", root, "--client-id", "scale-"+h.Name)
		if err != nil {
			return err
		}
		f.hosts, f.procs = append(f.hosts, h), append(f.procs, p)
	}
	for i, p := range f.procs {
		if err := p.WaitLog("subscribed and synced", 2*time.Minute); err != nil {
			return err
		}
		ns, err := f.hosts[i].NetNS()
		if err != nil {
			return err
		}
		be, err := ipset.New(ipset.Options{NetNS: int(ns)})
		ns.Close()
		if err != nil {
			return err
		}
		f.watchers = append(f.watchers, be)
	}
	return nil
}

func (f *fleet) close() {
	for _, w := range f.watchers {
		w.Close()
	}
}

// latency publishes c.bans bans at c.rate through pub and returns, for
// each, the time until every host's set held it. One publisher, one topic:
// each host applies them in order, so ban k is in a set once it holds k+1.
func (f *fleet) latency(pub *lab.Publisher, c config) ([]time.Duration, error) {
	sent := make([]time.Time, c.bans)
	reach := make([][]time.Time, len(f.hosts)) // per host, when it first held k+1
	for i := range reach {
		reach[i] = make([]time.Time, c.bans)
	}
	done := make(chan error, 1)
	go func() { done <- f.poll(reach, c) }()
	every := time.Second / time.Duration(c.rate)
	start := time.Now()
	for k := range c.bans {
		time.Sleep(time.Until(start.Add(time.Duration(k) * every)))
		sent[k] = time.Now()
		pub.Publish(wire.EventTopic(root, wire.KindAdd), false, []byte(addr(k)+" timeout 3600"))
	}
	if err := <-done; err != nil {
		return nil, err
	}
	lat := make([]time.Duration, c.bans)
	for k := range c.bans {
		for h := range reach {
			lat[k] = max(lat[k], reach[h][k].Sub(sent[k]))
		}
	}
	return lat, nil
}

// poll reads every host's set size in turn until all hold every ban.
func (f *fleet) poll(reach [][]time.Time, c config) error {
	have := make([]int, len(f.hosts))
	deadline := time.Now().Add(c.phase)
	for {
		all := true
		for h, w := range f.watchers {
			info, err := w.Info(context.Background(), root)
			now := time.Now()
			n := 0
			if err == nil {
				n = min(info.Size, c.bans)
			}
			for ; have[h] < n; have[h]++ {
				reach[h][have[h]] = now
			}
			all = all && have[h] == c.bans
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v, hosts hold %v of %d bans", c.phase, have, c.bans)
		}
		time.Sleep(time.Millisecond)
	}
}

func addr(k int) string { return fmt.Sprintf("198.18.%d.%d", k>>8, k&255) }

// syncs counts each host's completed syncs, from its log.
func (f *fleet) syncs() []int {
	n := make([]int, len(f.procs))
	for i, p := range f.procs {
		n[i] = strings.Count(p.Output(), "subscribed and synced")
	}
	return n
}

// waitResync returns how long after since every host in which has synced
// once more than in before.
func (f *fleet) waitResync(before []int, which []int, since time.Time, limit time.Duration) (time.Duration, error) {
	err := lab.Eventually(limit, func() (bool, string) {
		now := f.syncs()
		for _, i := range which {
			if now[i] <= before[i] {
				return false, fmt.Sprintf("host %s has not synced again", f.hosts[i].Name)
			}
		}
		return true, ""
	})
	return time.Since(since), err
}

// usage is a process's CPU time and resident memory, from /proc.
type usage struct {
	cpu time.Duration
	rss int64 // bytes
}

func procUsage(pid int) usage {
	var u usage
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) > 12 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			u.cpu = time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				u.rss = kb << 10
			}
		}
	}
	return u
}

func report(name string, c config, lat []time.Duration, resync time.Duration, resyncWhat string, cpu time.Duration, rss []int64) {
	s := slices.Clone(lat)
	slices.Sort(s)
	pct := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	fmt.Printf("%s, %d hosts: one ban in every host's set, %d bans at %d/s: p50 %v, p99 %v, max %v\n",
		name, c.hosts, c.bans, c.rate, pct(0.5).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond))
	fmt.Printf("%s: %s: %v\n", name, resyncWhat, resync.Round(time.Millisecond))
	var mb []string
	for _, r := range rss {
		mb = append(mb, fmt.Sprintf("%.1f MB", float64(r)/1e6))
	}
	fmt.Printf("%s: broker CPU during the bans %v; broker RSS after: %s\n", name, cpu.Round(time.Millisecond), strings.Join(mb, ", "))
}

// setup makes the lab, its log folder and the vallum binary.
func setup() (*lab.Lab, string, string, func(), error) {
	dir, err := os.MkdirTemp("", "vallum-scale")
	if err != nil {
		return nil, "", "", nil, err
	}
	bin, err := lab.BuildVallum(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", "", nil, err
	}
	l, err := lab.New()
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", "", nil, err
	}
	return l, dir, bin, func() { l.Close(); os.RemoveAll(dir) }, nil
}

func runEmbedded(c config) error {
	l, dir, bin, cleanup, err := setup()
	if err != nil {
		return err
	}
	defer cleanup()
	hub, err := l.AddHost("hub")
	if err != nil {
		return err
	}
	startHub := func() (*lab.Proc, error) {
		p, err := hub.Start(dir, bin, "broker", "--listen", "0.0.0.0:1883", "--allow-anonymous", "-t", root,
			"--data-dir", filepath.Join(dir, "hub-data"))
		if err == nil {
			err = hub.WaitPort(1883, 20*time.Second)
		}
		return p, err
	}
	hp, err := startHub()
	if err != nil {
		return err
	}
	var f fleet
	defer f.close()
	if err := f.start(l, dir, bin, c.hosts, func(int) string { return hub.Addr4 }); err != nil {
		return err
	}
	pub, err := hub.NewPublisher(1883)
	if err != nil {
		return err
	}
	u0 := procUsage(hp.Pid())
	lat, err := f.latency(pub, c)
	pub.Close()
	if err != nil {
		return err
	}
	u1 := procUsage(hp.Pid())
	before := f.syncs()
	if err := hp.Stop(); err != nil {
		return err
	}
	since := time.Now()
	if _, err := startHub(); err != nil {
		return err
	}
	all := make([]int, c.hosts)
	for i := range all {
		all[i] = i
	}
	resync, err := f.waitResync(before, all, since, c.phase)
	if err != nil {
		return err
	}
	report("embedded hub", c, lat, resync, "all hosts synced again after the hub restarted (SIGTERM, start)", u1.cpu-u0.cpu, []int64{u1.rss})
	return nil
}

func runNATS(c config) error {
	if _, err := lab.NATSServer(); err != nil {
		fmt.Println("nats: skipped:", err)
		return nil
	}
	l, dir, bin, cleanup, err := setup()
	if err != nil {
		return err
	}
	defer cleanup()
	var nh []*lab.Host
	for i := range 3 {
		h, err := l.AddHost("n" + strconv.Itoa(i+1))
		if err != nil {
			return err
		}
		nh = append(nh, h)
	}
	nodes, err := lab.StartNATSCluster(dir, nh)
	if err != nil {
		return err
	}
	// Hosts spread over the nodes, each given all three, its own first.
	from := func(i int) string {
		var a []string
		for k := range 3 {
			a = append(a, nh[(i+k)%3].Addr4)
		}
		return strings.Join(a, ",")
	}
	var f fleet
	defer f.close()
	if err := f.start(l, dir, bin, c.hosts, from); err != nil {
		return err
	}
	pub, err := nh[0].NewPublisher(lab.NATSMQTTPort)
	if err != nil {
		return err
	}
	var u0 []usage
	for _, n := range nodes {
		u0 = append(u0, procUsage(n.Proc.Pid()))
	}
	lat, err := f.latency(pub, c)
	pub.Close()
	if err != nil {
		return err
	}
	var cpu time.Duration
	var rss []int64
	for i, n := range nodes {
		u := procUsage(n.Proc.Pid())
		cpu += u.cpu - u0[i].cpu
		rss = append(rss, u.rss)
	}
	before := f.syncs()
	var onN1 []int
	for i := range c.hosts {
		if i%3 == 0 {
			onN1 = append(onN1, i)
		}
	}
	nodes[0].Proc.Kill()
	since := time.Now()
	if err := nodes[0].Start(); err != nil {
		return err
	}
	resync, err := f.waitResync(before, onN1, since, c.phase)
	if err != nil {
		return err
	}
	report("NATS, 3 nodes", c, lat, resync, fmt.Sprintf("the %d hosts of node 1 synced again after it was killed and started", len(onN1)), cpu, rss)
	return nil
}
