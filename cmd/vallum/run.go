package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/nft"
	"github.com/vallum/vallum/broker"
	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/metrics"
)

func runDaemonCmd(cmd *cobra.Command, _ []string) error {
	if printVersion(cmd) {
		return nil
	}
	c, log, err := setup(cmd)
	if err != nil {
		return err
	}
	return runDaemon(cmd.Context(), c, log)
}

// setup loads the configuration and the logger, and warns about secrets
// that others can read.
func setup(cmd *cobra.Command) (config, *slog.Logger, error) {
	c, err := loadConfig(cmd)
	if err != nil {
		return c, nil, err
	}
	log, err := newLogger(c, cmd.ErrOrStderr())
	if err != nil {
		return c, nil, err
	}
	warnSecrets(cmd, c, log)
	return c, log, nil
}

// runDaemon runs the embedded broker (when no broker is named), the bridge
// and the metrics server until ctx is done or one of them fails.
func runDaemon(ctx context.Context, c config, log *slog.Logger) error {
	lock, err := c.lockClientID()
	if err != nil {
		return err
	}
	defer lock.Close()
	bo, err := c.bridgeOptions(log)
	if err != nil {
		return err
	}
	if c.DataDir != "" { // each list's epoch at the last sync: see bridge/epoch.go
		bo.EpochFile = datadir.Dir(c.DataDir).Epochs()
	}
	be, err := newBackend(c, log.With("component", "backend"))
	if err != nil {
		return err
	}
	defer be.Close()
	g, ctx := errgroup.WithContext(ctx)
	m := &metrics.Exporter{Backend: be, Sets: setNames(bo.Lists)}
	if c.embedded() {
		var extra []broker.User
		if c.Users != "" && bo.Username == "" {
			// The broker asks every client for credentials: give the
			// daemon's own bridge an admin login of its own, made anew at
			// every start and never written anywhere.
			u, err := localUser()
			if err != nil {
				return err
			}
			extra, bo.Username, bo.Password = []broker.User{u.user}, u.user.Name, u.password
		}
		if m.Broker, err = startBroker(ctx, g, c, bo.Lists, extra, log); err != nil {
			return portInUse(err, true)
		}
		bo.Broker = localURL(m.Broker.Addrs())
	}
	if err := c.nftRules(ctx, be, &bo, log); err != nil {
		return err
	}
	m.Drops = dropsOf(be, bo.Lists)
	if err := c.killConnections(ctx, g, &bo, log); err != nil {
		return err
	}
	br, err := bridge.New(bo, be)
	if err != nil {
		return err
	}
	bo.Guard.Refresh(guard.ResolveBrokers(c.brokerHosts(), log), log) // before the first message
	g.Go(func() error { return bo.Guard.Watch(ctx, c.brokerHosts(), log) })
	c.startSensor(ctx, g, &bo, m, log) // after Refresh: the guard knows this host's addresses
	m.Stats = br.Stats()
	if c.Metrics != "" {
		if err := m.Serve(ctx, g, c.Metrics, log); err != nil {
			return err
		}
	}
	if keeperBuilt && c.Keeper {
		if err := startKeeperBeside(ctx, g, c, bo.ClientID, log); err != nil {
			return err
		}
	}
	g.Go(func() error { return br.Run(ctx) })
	for _, u := range append([]string{bo.Broker}, bo.Brokers...) {
		go warnIfTLS(ctx, u, &m.Stats.Connected, log)
	}
	onHUP(ctx, log, "SIGHUP: re-checking the sets and the list state; the configuration is read at start only, restart vallum to change it", func() {
		if err := br.Resync(ctx); err != nil {
			log.Warn("SIGHUP: resync", "err", err)
		}
	})
	log.Info("vallum started", "version", versionString(), "broker", strings.TrimPrefix(strings.Join(append([]string{bo.Broker}, bo.Brokers...), ","), ","), "backend", c.Backend, "lists", len(bo.Lists))
	return g.Wait()
}

func startBroker(ctx context.Context, g *errgroup.Group, c config, lists []bridge.List, extra []broker.User, log *slog.Logger) (*broker.Broker, error) {
	o, err := c.brokerOptions(lists, log)
	if err != nil {
		return nil, err
	}
	if err := applyMemoryLimit(c, log); err != nil {
		return nil, err
	}
	o.ExtraUsers = extra
	b, err := broker.New(o)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	g.Go(func() error { return b.Run(ctx) })
	log.Info("embedded broker listening", "addrs", strings.Join(b.Addrs(), " "))
	return b, nil
}

type login struct {
	user     broker.User
	password string
}

// localUser makes a random admin login for the daemon's own bridge.
func localUser() (login, error) {
	b := make([]byte, 24)
	rand.Read(b)
	pw := hex.EncodeToString(b)
	hash, err := broker.HashPassword(pw)
	if err != nil {
		return login{}, err
	}
	return login{broker.User{Name: "vallum-local-" + pw[:8], Password: hash, Role: broker.RoleAdmin}, pw}, nil
}

// localURL picks the listener the local bridge connects to: the first plain
// TCP one, through loopback when it listens on every address.
func localURL(addrs []string) string {
	for _, a := range addrs {
		hostport, ok := strings.CutPrefix(a, "tcp://")
		if !ok {
			continue
		}
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
			if ip != nil && ip.To4() == nil {
				host = "::1"
			}
		}
		return "tcp://" + net.JoinHostPort(host, port)
	}
	return ""
}

// nftRules installs the drop rules when --nft-rules asks for them, and
// hands the bridge what puts them back after a firewall reload.
func (c config) nftRules(ctx context.Context, be backend, bo *bridge.Options, log *slog.Logger) error {
	if !c.NftRules {
		return nil
	}
	nb, ok := be.(*nft.Backend)
	if !ok {
		return errors.New("--nft-rules needs --backend nft")
	}
	c.dropTo(nb, bo.Lists)
	if sensorBuilt {
		c.sensorRule(nb)
	}
	var specs []bridge.SetSpec
	for _, l := range bo.Lists {
		for _, s := range []bridge.SetSpec{{Name: l.Set4, Family: bridge.IPv4}, {Name: l.Set6, Family: bridge.IPv6}} {
			s.Create, s.MaxElem = bo.Create, bo.MaxElem
			if _, err := be.Ensure(ctx, s); err != nil {
				return fmt.Errorf("set %q: %w", s.Name, err)
			}
			specs = append(specs, s)
		}
	}
	if err := nb.EnsureRules(ctx, specs); err != nil {
		return fmt.Errorf("nft rules: %w", err)
	}
	bo.Rules = func(ctx context.Context) error {
		ok, err := nb.RulesInPlace(ctx, specs)
		if err != nil || ok {
			return err
		}
		log.Warn("nft drop rules were removed (a firewall reload?): putting them back")
		return nb.EnsureRules(ctx, specs)
	}
	return nil
}

// onHUP keeps SIGHUP (systemd's ExecReload, a closed terminal) from
// killing the process, logs say and runs do instead (nil: nothing). The
// configuration is read at start only, which say must tell.
func onHUP(ctx context.Context, log *slog.Logger, say string, do func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-hup:
				log.Info(say)
				if do != nil {
					do()
				}
			case <-ctx.Done():
				return
			}
		}
	}()
}

// warnSecrets warns about passwords that others can see.
func warnSecrets(cmd *cobra.Command, c config, log *slog.Logger) {
	if f := cmd.Flags().Lookup("password"); f != nil && f.Changed {
		log.Warn("a password given with -P is visible to every user in ps: use --password-file or VALLUM_PASSWORD")
	}
	for _, f := range []string{c.file, c.PasswordFile} {
		if st, err := os.Stat(f); f != "" && err == nil && st.Mode().Perm()&0o004 != 0 && (f == c.PasswordFile || c.Password != "") {
			log.Warn("file with a password is readable by every user: chmod o-r", "file", f)
		}
	}
}
