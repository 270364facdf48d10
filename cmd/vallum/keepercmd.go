//go:build !vallum_small

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/keeper"
	"github.com/vallum/vallum/internal/keepermqtt"
	"github.com/vallum/vallum/internal/wire"
)

// keeperBuilt: this build has `vallum keeper` and the daemon's --keeper.
// The router builds (contrib/build-static.sh, tag vallum_small) leave them
// out (keepercmd_small.go): 57 KB of mips, for what a hub on a router does
// not need (its embedded broker keeps its lists itself).
const keeperBuilt = true

// keeperFlag adds the daemon's --keeper.
func keeperFlag(f *pflag.FlagSet) {
	f.Bool("keeper", false, "with -h: also keep the -t lists' state on that broker, as `vallum keeper` does")
}

func newKeeperCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "keeper",
		Short: "Keep lists' state on any broker (mosquitto, NATS...): events into state, expiry, a lost list restored",
		Long: `vallum keeper is the owner of a list's state on a broker other than vallum's
embedded one (which runs a keeper itself). It turns legacy events
(ROOT/add, ROOT/del) into retained state, deletes expired bans, keeps the
list's record (vallum/keeper/ROOT), and rebuilds a list the broker lost from
its own copy in DATA_DIR/keeper. Run one (or two, for availability) per list.`,
		Example: `  vallum keeper -h mosquitto.example -u keeper --password-file /etc/vallum/keeper.pw -t blacklist
  vallum keeper -h n1,n2,n3 -t blacklist -t site1/blacklist --data-dir /var/lib/vallum`,
		Args: cobra.NoArgs,
		RunE: keeperCmd,
	}
	keeperFlags(c.Flags())
	return c
}

// keeperFlags are the daemon's connection flags (not --qos: the keeper
// reads and writes at QoS 1 only) and the limits it shares with the
// bridges.
func keeperFlags(f *pflag.FlagSet) {
	conn := pflag.NewFlagSet("conn", pflag.ContinueOnError)
	connFlags(conn)
	conn.VisitAll(func(fl *pflag.Flag) {
		switch fl.Name {
		case "qos":
			return
		case "host":
			fl.Usage = "MQTT broker host, or several separated by commas, tried in turn"
		case "client-id":
			fl.Usage = "MQTT client id (default keeper-HOSTNAME; a flag only: the config file's client_id is the daemon's)"
		case "data-dir":
			fl.Usage = "directory of the keeper's copy of its lists (DATA_DIR/keeper)"
		}
		f.AddFlag(fl)
	})
	f.StringArray("allow", nil, "CIDR that never becomes state, repeatable (as the bridges' --allow)")
	f.Int("widest-v4", guard.DefaultWidest4, "broadest IPv4 prefix length that becomes state")
	f.Int("widest-v6", guard.DefaultWidest6, "broadest IPv6 prefix length that becomes state")
	f.Int("max-payload", bridge.DefaultMaxPayload, "largest event payload in bytes; larger events are refused whole")
	f.Duration("sync-timeout", bridge.DefaultSyncTimeout, "a read of the lists that receives nothing for this long drops the connection and moves to the next broker")
	policyFlag(f)
	legacyStateFlag(f)
}

func keeperCmd(cmd *cobra.Command, _ []string) error {
	if printVersion(cmd) {
		return nil
	}
	c, log, err := setup(cmd)
	if err != nil {
		return err
	}
	ko, ao, err := c.keeperOptions(log)
	id, idErr := c.keeperClientID(cmd)
	if err = errors.Join(err, idErr); err != nil {
		return err
	}
	ao.ClientID = id
	run, done, err := c.prepareKeeper(ko, ao, log)
	if err != nil {
		return err
	}
	defer done()
	onHUP(cmd.Context(), log, "SIGHUP: the keeper reads its configuration at start only; restart it to change it", nil)
	return run(cmd.Context())
}

// startKeeperBeside starts in g the keeper that `vallum -h BROKER -t LIST
// --keeper` runs beside its bridge, on the bridge's broker, with the
// client id keeper-ID for the bridge's vallum-ID: as unique as the
// bridge's.
func startKeeperBeside(ctx context.Context, g *errgroup.Group, c config, bridgeID string, log *slog.Logger) error {
	if c.embedded() {
		return errors.New("--keeper needs -h or --broker: the embedded broker keeps its lists itself")
	}
	ko, ao, err := c.keeperOptions(log)
	if err != nil {
		return err
	}
	ao.ClientID = "keeper-" + strings.TrimPrefix(bridgeID, "vallum-")
	run, done, err := c.prepareKeeper(ko, ao, log)
	if err != nil {
		return err
	}
	g.Go(func() error {
		defer done()
		return run(ctx)
	})
	return nil
}

// prepareKeeper locks the keeper's copy in the data dir and makes the
// keeper and its connection. run runs it until ctx ends; done releases
// the copy and its lock, after run has returned.
func (c config) prepareKeeper(ko keeper.Options, ao keepermqtt.Options, log *slog.Logger) (run func(context.Context) error, done func(), err error) {
	// The record names the keeper that cuts the list's chunks by its
	// client id: unique on the broker, unlike a host name.
	ko.Name = ao.ClientID
	var lock *datadir.Lock
	if c.DataDir != "" {
		d := datadir.Dir(c.DataDir)
		if lock, err = datadir.Acquire(d.KeeperLock(), "the keeper's copy in "+c.DataDir); err != nil {
			return nil, nil, err
		}
		ko.Copy = d.KeeperCopy()
	} else {
		log.Warn("no --data-dir: the keeper keeps no copy of its lists, and cannot rebuild a list the broker loses")
	}
	a, err := keepermqtt.New(ao)
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	k, err := keeper.New(ko, a)
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	run = func(ctx context.Context) error {
		log.Info("vallum keeper started", "version", versionString(), "broker", urlString(ao.Brokers),
			"client", ao.ClientID, "lists", strings.Join(ko.Roots, " "), "copy", ko.Copy)
		return a.Run(ctx, k)
	}
	return run, func() { k.Close(); lock.Close() }, nil
}

// keeperOptions checks the keeper's settings but its client id, every
// problem at once.
func (c config) keeperOptions(log *slog.Logger) (keeper.Options, keepermqtt.Options, error) {
	var errs []error
	ko := keeper.Options{LegacyState: c.LegacyState, LegacyAuto: !c.legacySet, Logger: log.With("component", "keeper")}
	ao := keepermqtt.Options{Username: c.User, SyncTimeout: c.SyncTimeout, Logger: log.With("component", "keeper")}
	if c.embedded() {
		errs = append(errs, errors.New("vallum keeper needs a broker: -h HOST or --broker URL (the embedded broker keeps its lists itself)"))
	}
	lists, err := c.lists()
	errs = append(errs, err)
	for _, l := range lists {
		ko.Roots = append(ko.Roots, l.Root)
	}
	ko.Limits = c.keeperLimits()
	errs = append(errs, c.checkKeeperLimits())
	ko.Policy, err = c.keeperPolicy(datadir.Dir(c.DataDir).KeeperHistory())
	errs = append(errs, err)
	urls, err := c.brokerURLs()
	errs = append(errs, err)
	for _, s := range urls {
		u, err := url.Parse(s)
		errs = append(errs, err)
		if err == nil {
			ao.Brokers = append(ao.Brokers, u)
		}
	}
	ao.Password, err = c.password()
	errs = append(errs, err)
	ao.TLS, err = c.tlsConfig()
	errs = append(errs, err)
	return ko, ao, errors.Join(errs...)
}

// checkKeeperLimits checks the limits the keeper shares with the bridges
// (keeperLimits), as the daemon checks them.
func (c config) checkKeeperLimits() error {
	lim := config{MaxPayload: c.MaxPayload, WidestV4: c.WidestV4, WidestV6: c.WidestV6, MaxElem: 1,
		Host: c.Host, Broker: c.Broker, Port: c.Port}
	errs := []error{lim.checkLimits()}
	for _, a := range c.Allow {
		if _, err := wire.ParsePrefix(a); err != nil {
			errs = append(errs, fmt.Errorf("--allow %q: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

// keeperClientID is --client-id given as a flag, or keeper-HOSTNAME. Not
// the client_id of the config file or VALLUM_CLIENT_ID: on a host that
// runs the daemon too, that is the bridge's, and two clients with one id
// knock each other off the broker.
func (c config) keeperClientID(cmd *cobra.Command) (string, error) {
	if cmd.Flags().Changed("client-id") {
		return c.ClientID, validClientID(c.ClientID)
	}
	h := hostname()
	if h == "" {
		return "", errors.New("no host name to make the keeper's client id from: give --client-id")
	}
	id := "keeper-" + h
	return id, validClientID(id)
}

func validClientID(id string) error {
	if id == "" || strings.ContainsAny(id, "+#/\x00") || len(id) > 128 {
		return fmt.Errorf("--client-id %q: not empty, no +, #, / or NUL, at most 128 bytes", id)
	}
	return nil
}

func urlString(urls []*url.URL) string {
	s := make([]string, len(urls))
	for i, u := range urls {
		s[i] = u.Redacted()
	}
	return strings.Join(s, ",")
}
