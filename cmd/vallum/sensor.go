//go:build !vallum_lean

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/nft"
	"github.com/vallum/vallum/internal/metrics"
	"github.com/vallum/vallum/internal/sensor"
	"github.com/vallum/vallum/internal/wire"
)

// sensorBuilt says whether this build has the scan sensor.
const sensorBuilt = true

// sensorRule has --nft-rules add the sensor's logging rule.
func (c config) sensorRule(nb *nft.Backend) {
	if c.Sensor != "" {
		nb.Sensor(nft.SensorRule{Group: uint16(c.SensorGroup), Rate: uint64(c.SensorRate)})
	}
}

// startSensor starts the scan sensor when --sensor asks for it. Its bans
// go out as `vallum ban` sends them (state, then event) on a connection of
// its own with the bridge's credentials: every host of the list gets them,
// this one through its bridge like any other. With --sensor-report they
// go out as `vallum ban --report` sends them instead: banned here at once,
// reported to the keeper, whose quorum decides the rest.
func (c config) startSensor(ctx context.Context, g *errgroup.Group, bo *bridge.Options, m *metrics.Exporter, log *slog.Logger) {
	if c.Sensor == "" {
		return
	}
	log = log.With("component", "sensor")
	ignore, _ := c.sensorIgnore() // checked by bridgeOptions
	pub := &sensorPublisher{root: c.Sensor, ttl: wire.ClampTimeout(c.SensorBanTime), bo: bo, log: log}
	if c.SensorReport {
		pub.banHere = func(p netip.Prefix, ttl wire.Timeout) error { return c.banLocally(bridge.List{Root: c.Sensor}, p, ttl) }
	}
	s := sensor.New(sensor.Options{
		Group: uint16(c.SensorGroup), Rate: c.SensorRate, Ban: pub.ban, Logger: log,
		Detector: sensor.DetectorOptions{
			Ports: c.SensorPorts, Window: c.SensorWindow, Ignore: ignore, Rearm: c.SensorBanTime, Prefix6: c.SensorIPv6Prefix,
			Allowed: func(p netip.Prefix) bool { return bo.Guard.Check(p) == nil },
		},
	})
	st := s.Stats()
	m.Sensor = func() metrics.SensorCounts {
		return metrics.SensorCounts{Packets: st.Packets.Load(), Bans: st.Bans.Load(), Overload: st.Overload.Load(), Tracked: st.Tracked.Load()}
	}
	g.Go(func() error {
		defer pub.close()
		// A sensor that cannot read its group (another program bound it,
		// no nfnetlink_log) must not take the bans down with it.
		if err := s.Run(ctx); err != nil {
			log.Error("port scan sensor stopped: bans still apply", "err", err)
		}
		return nil
	})
	log.Info("port scan sensor on", "list", c.Sensor, "nflog_group", c.SensorGroup, "ports", c.SensorPorts,
		"window", c.SensorWindow, "ban_time", c.SensorBanTime, "ipv6_prefix", c.SensorIPv6Prefix, "report", c.SensorReport)
}

// sensorPublisher publishes the sensor's bans; its ban runs in the
// sensor's one ban goroutine, so it needs no lock.
type sensorPublisher struct {
	root string
	ttl  wire.Timeout
	bo   *bridge.Options
	log  *slog.Logger
	cl   mqtt.Client // nil until the first ban, and after a failure
	// banHere, with --sensor-report, bans in this host's set: the scanner
	// is then reported, not banned on the list.
	banHere func(netip.Prefix, wire.Timeout) error
}

func (p *sensorPublisher) ban(ctx context.Context, pfx netip.Prefix) error {
	if p.banHere != nil {
		return p.report(pfx)
	}
	if p.cl == nil || !p.cl.IsConnected() {
		if err := p.dial(); err != nil {
			return err
		}
	}
	st := wire.State{At: time.Now(), Reason: "portscan", Origin: hostname()}
	if p.ttl > 0 {
		st.Expires = st.At.Add(time.Duration(p.ttl) * time.Second)
	}
	event := wire.FormatPrefix(pfx) + " timeout " + strconv.FormatInt(int64(p.ttl), 10)
	// As banCmd: the state first, then the event (see there why).
	err := wait(p.cl.Publish(wire.StateTopic(p.root, pfx), 1, true, wire.EncodeState(st)), "publish state")
	if err == nil {
		err = wait(p.cl.Publish(wire.EventTopic(p.root, bridge.Add.Kind()), 1, false, event), "publish event")
	}
	if err != nil {
		p.close() // dial anew for the next ban
	}
	return err
}

// report bans pfx here, then reports it under the login's name as
// `vallum ban --report` does. Here first: a sensor that cannot reach its
// broker still stops the scanner where it was seen.
func (p *sensorPublisher) report(pfx netip.Prefix) error {
	if err := p.banHere(pfx, p.ttl); err != nil {
		return err
	}
	if p.cl == nil || !p.cl.IsConnected() {
		if err := p.dial(); err != nil {
			return fmt.Errorf("banned here, not reported: %w", err)
		}
	}
	if err := publishReport(p.cl, p.bo.Username, p.root, pfx, p.ttl); err != nil {
		p.close()
		return fmt.Errorf("banned here, not reported: %w", err)
	}
	return nil
}

// dial connects with the bridge's brokers and login and a clean session
// of its own id, so that it never takes over the bridge's session.
func (p *sensorPublisher) dial() error {
	id := make([]byte, 6)
	rand.Read(id)
	o := mqtt.NewClientOptions().SetClientID("vallum-sensor-" + hex.EncodeToString(id)).
		SetUsername(p.bo.Username).SetPassword(p.bo.Password).SetTLSConfig(p.bo.TLS).SetCleanSession(true).
		SetProtocolVersion(4).SetConnectTimeout(10 * time.Second).SetAutoReconnect(false)
	for _, u := range append([]string{p.bo.Broker}, p.bo.Brokers...) {
		if u != "" {
			o.AddBroker(u)
		}
	}
	cl := mqtt.NewClient(o)
	if err := wait(cl.Connect(), "sensor: connect"); err != nil {
		return err
	}
	p.cl = cl
	return nil
}

func (p *sensorPublisher) close() {
	if p.cl != nil {
		p.cl.Disconnect(250)
		p.cl = nil
	}
}
