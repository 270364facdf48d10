package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// NATSCacheBin is where .ci/install-deps builds nats-server (tests only,
// never linked into vallum), once per machine.
const NATSCacheBin = "/var/cache/vallum-ci/bin/nats-server"

// ErrNoNATS reports that nats-server is not installed.
var ErrNoNATS = errors.New("nats-server not found in PATH or " + NATSCacheBin +
	" (.ci/install-deps builds it: GOBIN=/var/cache/vallum-ci/bin go install github.com/nats-io/nats-server/v2@v2.15.2)")

// NATSServer returns the path of nats-server: from PATH, else the CI cache.
func NATSServer() (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat(NATSCacheBin); err == nil {
		return NATSCacheBin, nil
	}
	return "", ErrNoNATS
}

// NATSNode is one node of a NATS cluster with MQTT enabled, configured from
// contrib/nats/nats.conf.
type NATSNode struct {
	Host *Host
	Proc *Proc
	Name string // server_name: n1, n2, ...
	bin  string
	dir  string
	conf string
}

// The MQTT and monitoring ports of contrib/nats/nats.conf.
const (
	NATSMQTTPort    = 1883
	natsMonitorPort = 8222
)

// StartNATSCluster runs one NATS node in each host, with the configuration
// shipped in contrib/nats/nats.conf (names, routes and store directory
// replaced), and waits until every node takes MQTT connections.
func StartNATSCluster(dir string, hosts []*Host) ([]*NATSNode, error) {
	bin, err := NATSServer()
	if err != nil {
		return nil, err
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	recipe, err := os.ReadFile(filepath.Join(root, "contrib", "nats", "nats.conf"))
	if err != nil {
		return nil, err
	}
	var nodes []*NATSNode
	for i, h := range hosts {
		n := &NATSNode{Host: h, Name: fmt.Sprintf("n%d", i+1), bin: bin, dir: dir}
		n.conf = filepath.Join(dir, "nats-"+n.Name+".conf")
		if err := os.WriteFile(n.conf, []byte(natsConf(string(recipe), n.Name, filepath.Join(dir, "nats-"+n.Name), hosts)), 0o644); err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			return nodes, err
		}
	}
	for _, n := range nodes {
		if err := n.WaitMQTT(60 * time.Second); err != nil {
			return nodes, err
		}
	}
	return nodes, nil
}

// natsConf fills the recipe in for one node: its name, its store, and the
// routes to every host's address instead of n1, n2, n3.
func natsConf(recipe, name, store string, hosts []*Host) string {
	r := strings.NewReplacer("server_name: n1", "server_name: "+name, "store_dir: /var/lib/nats", "store_dir: "+store)
	conf := r.Replace(recipe)
	var routes []string
	for _, h := range hosts {
		routes = append(routes, "    nats-route://"+h.Addr4+":6222")
	}
	start := strings.Index(conf, "  routes: [\n")
	end := strings.Index(conf[start:], "  ]\n") + start
	return conf[:start] + "  routes: [\n" + strings.Join(routes, "\n") + "\n" + conf[end:]
}

// Start runs the node (again, after Kill: its JetStream store is kept).
func (n *NATSNode) Start() error {
	p, err := n.Host.Start(n.dir, n.bin, "-c", n.conf)
	if err != nil {
		return err
	}
	n.Proc = p
	if err := n.Host.WaitPort(NATSMQTTPort, 20*time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, tail(p.Output()))
	}
	return nil
}

// WaitReady polls the node's /healthz until its JetStream is ready (the
// cluster's leaders elected: some seconds after a start).
func (n *NATSNode) WaitReady(timeout time.Duration) error {
	return Eventually(timeout, func() (bool, string) {
		body, err := n.Host.HTTPGet(natsMonitorPort, "/healthz")
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			return false, fmt.Sprintf("NATS %s /healthz: %v %s\n%s", n.Name, err, body, tail(n.Proc.Output()))
		}
		return true, ""
	})
}

// WaitMQTT waits until the node is ready, then connects one MQTT client
// with a persistent session, which creates the MQTT streams on the first
// node that gets one. An MQTT client that connects before JetStream is
// ready can wait js_api_timeout (60 s) for its session.
func (n *NATSNode) WaitMQTT(timeout time.Duration) error {
	if err := n.WaitReady(timeout); err != nil {
		return err
	}
	o := mqtt.NewClientOptions().SetClientID("lab-wait-" + n.Name).SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(timeout)
	c := n.Host.MQTT(NATSMQTTPort, o)
	tok := c.Connect()
	if !tok.WaitTimeout(timeout) || tok.Error() != nil {
		return fmt.Errorf("MQTT on NATS %s: %v\n%s", n.Name, tok.Error(), tail(n.Proc.Output()))
	}
	c.Disconnect(100)
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("lab: cannot find the module root: %v", err)
	}
	return filepath.Dir(gomod), nil
}
