package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/broker"
	"github.com/vallum/vallum/internal/backends"
	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/keeper"
	"github.com/vallum/vallum/internal/wire"
)

// lists parses the -t values.
func (c config) lists() ([]bridge.List, error) {
	if len(c.Topic) == 0 {
		return nil, errors.New("no list topic: give at least one -t TOPIC (for example -t blacklist)")
	}
	var errs []error
	var lists []bridge.List
	for _, t := range c.Topic {
		l, err := bridge.ParseList(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("-t %q: %w", t, err))
			continue
		}
		lists = append(lists, l)
	}
	return lists, errors.Join(errs...)
}

// bridgeOptions checks every bridge setting and returns them all, with every
// problem at once. Broker is left empty when the broker is embedded.
func (c config) bridgeOptions(log *slog.Logger) (bridge.Options, error) {
	var errs []error
	lists, err := c.lists()
	errs = append(errs, err)
	var allow []netip.Prefix
	for _, a := range c.Allow {
		p, err := wire.ParsePrefix(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("--allow %q: %w", a, err))
		}
		allow = append(allow, p)
	}
	o := bridge.Options{
		Lists: lists, Username: c.User, QoS: byte(c.QoS), Create: !c.NoCreate, MaxElem: c.MaxElem,
		MaxPayload: c.MaxPayload, Guard: guard.New(allow, c.WidestV4, c.WidestV6),
		Logger: log.With("component", "bridge"), SyncTimeout: c.SyncTimeout,
	}
	if bridge.PresenceBuilt { // (the MIPS builds publish no status)
		o.Presence = bridge.Presence{Version: versionString(), Backend: c.Backend}
	}
	errs = append(errs, c.checkLimits(), bridge.CheckKillLists(c.KillConnections, lists))
	if sensorBuilt {
		errs = append(errs, c.checkSensor(lists))
	}
	o.KillLists = c.KillConnections
	if len(c.KillConnections) > 0 && !killBuilt {
		// The shipped router config turns it on: a firewall that refused
		// to start over an extra would leave the router without its bans.
		log.Warn("--kill-connections is not in this build (vallum_lean, for size): bans apply, open connections of banned addresses are not cut",
			"lists", c.KillConnections)
		o.KillLists = nil
	}
	if !backends.Known(c.Backend) {
		errs = append(errs, fmt.Errorf("--backend %q: choose one of %s", c.Backend, backends.Names()))
	}
	o.Password, err = c.password()
	errs = append(errs, err)
	o.TLS, err = c.tlsConfig()
	errs = append(errs, err)
	o.ClientID, err = c.clientID()
	errs = append(errs, err)
	if !c.embedded() {
		o.Brokers, err = c.brokerURLs()
		errs = append(errs, err)
		o.ConfirmSync = confirmSync
	}
	return o, errors.Join(errs...)
}

// keeperLimits are the bridge's limits, which the hub's keeper applies
// too. An --allow entry that does not parse is left out here: the
// daemon's bridgeOptions refuses it.
func (c config) keeperLimits() keeper.Limits {
	l := keeper.Limits{MaxPayload: c.MaxPayload, MinBitsV4: c.WidestV4, MinBitsV6: c.WidestV6}
	for _, a := range c.Allow {
		if p, err := wire.ParsePrefix(a); err == nil {
			l.Allow = append(l.Allow, p)
		}
	}
	return l
}

// confirmSync is how long after a connection's first sync the bridge syncs
// again. A broker's copy
// of the state may still be catching up when a host connects: on a NATS
// cluster, the node taking over from a killed one served a stale state; a
// mosquitto site whose bridge to the hub reconnected at the moment its host
// did served the bans lifted meanwhile, and the host kept them.
const confirmSync = 15 * time.Second

// brokerOptions checks the embedded broker's settings.
func (c config) brokerOptions(lists []bridge.List, log *slog.Logger) (broker.Options, error) {
	o := broker.Options{
		TLSCert: c.TLSCert, TLSKey: c.TLSKey, TLSClientCA: c.TLSClientCA,
		UsersFile: c.Users, AllowAnonymous: c.AllowAnonymous,
		DataDir: c.DataDir, WSHosts: c.WSHost, Web: c.Web, Logger: log.With("component", "broker"),
	}
	for _, l := range lists {
		o.Lists = append(o.Lists, l.Root)
	}
	o.Keeper = c.keeperLimits()
	o.LegacyState, o.LegacyAuto = c.LegacyState, !c.legacySet
	pol, err := c.hubPolicy()
	o.Policy = pol
	_, sizeErr := parseSize(c.MemoryLimit)
	err = errors.Join(err, sizeErr)
	errs := []error{err}
	for _, l := range c.BrokerLimit {
		errs = append(errs, o.SetLimit(l))
	}
	if len(c.Listen) == 0 {
		errs = append(errs, errors.New("the embedded broker needs at least one --listen address"))
	}
	for _, s := range c.Listen {
		l, err := broker.ParseListen(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("--listen %q: %w", s, err))
			continue
		}
		o.Listeners = append(o.Listeners, l)
	}
	return o, errors.Join(errs...)
}
