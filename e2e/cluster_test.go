//go:build e2e

package e2e

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// Issue 15: vallum on a NATS cluster (three nodes, MQTT enabled, configured
// with contrib/nats/nats.conf), each bridge given every node.

// natsCluster starts three NATS nodes in hosts n1, n2, n3. Without
// nats-server the test is skipped, except in CI (.ci/run sets VALLUM_CI),
// where .ci/install-deps must have built it.
func natsCluster(t *testing.T) (*lab.Lab, string, []*lab.NATSNode) {
	t.Helper()
	if _, err := lab.NATSServer(); errors.Is(err, lab.ErrNoNATS) {
		if os.Getenv("VALLUM_CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	l, dir := newLab(t)
	hosts := []*lab.Host{addHost(t, l, "n1"), addHost(t, l, "n2"), addHost(t, l, "n3")}
	nodes, err := lab.StartNATSCluster(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	return l, dir, nodes
}

// nodesFrom is the -h value that tries node i first, then the others.
func nodesFrom(nodes []*lab.NATSNode, i int) string {
	var addrs []string
	for k := range nodes {
		addrs = append(addrs, nodes[(i+k)%len(nodes)].Host.Addr4)
	}
	return strings.Join(addrs, ",")
}

// startOnCluster starts vallum on h with every node, node i first.
func startOnCluster(t *testing.T, h *lab.Host, dir string, nodes []*lab.NATSNode, i int, args ...string) *lab.Proc {
	t.Helper()
	args = append([]string{"-h", nodesFrom(nodes, i), "-t", root, "--client-id", "host-" + h.Name}, args...)
	p := must[*lab.Proc](t)(h.StartVallum(dir, vallumBin, args...))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vallum on %s:\n%s", h.Name, lastLines(p.Output(), 30))
		}
	})
	return p
}

// cli runs a vallum subcommand in h against the cluster, node i first.
func cli(t *testing.T, h *lab.Host, nodes []*lab.NATSNode, i int, args ...string) {
	t.Helper()
	must[string](t)(h.Exec(vallumBin, append([]string{"-h", nodesFrom(nodes, i)}, args...)...))
}

// Bans made through node 1 reach hosts attached to nodes 2 and 3, and no
// host bans a node of its cluster, even one it is not connected to.
func TestNATSClusterFanOut(t *testing.T) {
	l, dir, nodes := natsCluster(t)
	a, b := addHost(t, l, "a"), addHost(t, l, "b")
	startOnCluster(t, a, dir, nodes, 1)
	startOnCluster(t, b, dir, nodes, 2)
	n1 := nodes[0].Host
	cli(t, n1, nodes, 0, "ban", root, "203.0.113.1", "--timeout", "1h")
	cli(t, n1, nodes, 0, "ban", root, "203.0.113.2")
	cli(t, n1, nodes, 0, "ban", root, "203.0.113.3")
	cli(t, n1, nodes, 0, "unban", root, "203.0.113.2")
	// The nodes' own addresses: a host that banned them would cut itself
	// off from its failover.
	for _, n := range nodes {
		cli(t, n1, nodes, 0, "ban", root, n.Host.Addr4)
	}
	cli(t, n1, nodes, 0, "ban", root, "203.0.113.4") // a fence: what came before is in
	for _, h := range []*lab.Host{a, b} {
		waitSet(t, h, 20*time.Second, []string{"203.0.113.1", "203.0.113.3", "203.0.113.4"})
	}
}

// streamOp is op k of a stream of bans and unbans: every fifth op lifts
// the ban made two ops before it.
func streamOp(k int) (i int, add bool) {
	if k%5 == 4 {
		return k - 2, false
	}
	return k, true
}

// publishOp publishes op k as vallum ban and unban do: the retained state,
// then the event, both at QoS 1.
func publishOp(p *lab.Publisher, k int, at time.Time) {
	i, add := streamOp(k)
	a := banAddr(i).String()
	if add {
		m := ban(i, at, at.Add(time.Hour))
		p.Publish(m.Topic, true, m.Payload)
		p.Publish(wire.EventTopic(root, wire.KindAdd), false, []byte(a+" timeout 3600"))
		return
	}
	p.Publish(stateTopic(i), true, nil)
	p.Publish(wire.EventTopic(root, wire.KindDel), false, []byte(a))
}

// publishOps publishes ops [from, to) through the node in h, calling
// before(k) ahead of each.
func publishOps(h *lab.Host, from, to int, at time.Time, before func(k int)) error {
	pub, err := h.NewPublisher(lab.NATSMQTTPort)
	if err != nil {
		return err
	}
	for k := from; k < to; k++ {
		before(k)
		publishOp(pub, k, at)
	}
	return pub.Close()
}

func streamWant(n int) []string {
	lifted := map[int]bool{}
	for k := range n {
		if i, add := streamOp(k); !add {
			lifted[i] = true
		}
	}
	var want []string
	for k := range n {
		if i, add := streamOp(k); add && !lifted[i] {
			want = append(want, banAddr(i).String())
		}
	}
	return want
}

// A node is killed (SIGKILL) in the middle of a stream of 5,000 QoS 1 bans
// and unbans published on another node: the hosts attached to it fail over
// to the next node and go on getting bans. While the node is down, NATS
// 2.15 nodes serve retained state that is incomplete and differs between
// them (measured: one served 903 of 3,000 bans for over a minute, another
// 3,000, then 7, then 3,000), so a sync then may be wrong; once the node
// is back and the hosts resync (SIGHUP), every host holds exactly the
// expected list.
func TestNATSNodeKilledMidStream(t *testing.T) {
	const n = 5000
	l, dir, nodes := natsCluster(t)
	var hosts []*lab.Host
	var procs []*lab.Proc
	for i := range nodes {
		h := addHost(t, l, "h"+string(rune('1'+i)))
		hosts = append(hosts, h)
		procs = append(procs, startOnCluster(t, h, dir, nodes, i))
	}
	now := time.Now()
	const chunk = 500
	var retried []int // the parts published again
	for from := 0; from < n; from += chunk {
		// A node may leave a connection or a publish unanswered while the
		// cluster elects new leaders: a part that failed is published
		// again, in order, through node 1 or 3 in turn, which ends in the
		// same list.
		for try := 0; ; try++ {
			err := publishOps(nodes[[]int{0, 2}[try%2]].Host, from, min(from+chunk, n), now, func(k int) {
				if k == n/2 && !nodes[1].Proc.Exited() {
					nodes[1].Proc.Kill()
				}
			})
			if err == nil {
				break
			}
			if try == 3 {
				t.Fatal(err)
			}
			t.Logf("ops %d-%d: %v; publishing them again", from, from+chunk-1, err)
			if len(retried) == 0 || retried[len(retried)-1] != from {
				retried = append(retried, from)
			}
		}
	}
	// Live bans still reach every host, the failed-over one included.
	cli(t, nodes[0].Host, nodes, 0, "ban", root, "203.0.113.99")
	for _, h := range hosts {
		waitMember(t, h, root, "203.0.113.99", 30*time.Second)
	}
	if out := procs[1].Output(); !strings.Contains(out, "connected component=bridge broker=tcp://"+nodes[2].Host.Addr4) &&
		!strings.Contains(out, "connected component=bridge broker=tcp://"+nodes[0].Host.Addr4) {
		t.Errorf("the host on the killed node did not move to the next node:\n%s", lastLines(out, 20))
	}
	if err := nodes[1].Start(); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].WaitReady(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	// A publish left unanswered may still land after the part published
	// again (seen under load: unbans of the retried part undone by their
	// ban's first publish, which the cluster took later, on every node).
	// A publisher that retries does so again once the cluster is whole;
	// the hosts must then hold exactly what it holds.
	for _, from := range retried {
		if err := publishOps(nodes[0].Host, from, min(from+chunk, n), now, func(int) {}); err != nil {
			t.Fatalf("ops %d-%d once the cluster is whole: %v", from, from+chunk-1, err)
		}
	}
	want := append(streamWant(n), "203.0.113.99")
	for i, h := range hosts {
		procs[i].Signal(syscall.SIGHUP)
		waitSet(t, h, time.Minute, want)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// natsLateJoin is the size of the late join through the cluster as per-ban
// state, a list without a keeper: 20,000 to keep CI short (about 15 s to
// publish); VALLUM_E2E_FULL=1 makes it 100,000 (measured: 62 s to publish,
// 79 s to join). TestNATSCompactLateJoin joins 100,000 kept as chunks.
func natsLateJoin() int {
	if os.Getenv("VALLUM_E2E_FULL") != "" {
		return 100_000
	}
	return 20_000
}

// A host joins late, through a node just restarted (the first MQTT client
// of a restarted NATS node may get nothing for minutes): within its sync
// timeout it moves on to the next node, and it converges to all of
// natsLateJoin bans published through another node.
func TestNATSLateJoinRestartedNode(t *testing.T) {
	l, dir, nodes := natsCluster(t)
	n := natsLateJoin()
	now := time.Now()
	msgs := make([]lab.Retained, 0, n)
	for i := range n {
		msgs = append(msgs, ban(i, now, now.Add(time.Hour)))
	}
	pub := must[*lab.Publisher](t)(nodes[0].Host.NewPublisher(lab.NATSMQTTPort))
	start := time.Now()
	pub.PublishAll(msgs)
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d retained bans published through n1 in %v", n, time.Since(start).Round(time.Millisecond))
	nodes[2].Proc.Kill()
	if err := nodes[2].Start(); err != nil { // waits for the port only: no MQTT client before the host's
		t.Fatal(err)
	}
	h := addHost(t, l, "late")
	start = time.Now()
	p := must[*lab.Proc](t)(h.StartVallumNoWait(dir, vallumBin, "-h", nodesFrom(nodes, 2), "-t", root,
		"--client-id", "late", "--sync-timeout", "10s"))
	waitSet(t, h, 3*time.Minute, addrs(0, n))
	t.Logf("late join of %d through restarted n3: %v\n%s", n, time.Since(start).Round(time.Millisecond), lastLines(p.Output(), 12))
}
