//go:build !(vallum_small && (mips || mipsle))

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/wire"
)

// CommentReport marks the entry `vallum ban --report` adds to this host's
// set. The bridge leaves an entry without its own comments alone, so the
// local ban lasts its own time whatever the shared list says.
const CommentReport = "vallum-report"

// reportsBuilt says whether this build has reports.
const reportsBuilt = true

// reportFlags are `vallum ban`'s flags for reports.
func reportFlags(f *pflag.FlagSet) {
	f.Bool("report", false, "report to the list's keeper (vallum/report/USER/LIST) instead of banning everywhere: the keeper's policy decides (quorum, limits); this host bans at once (--local)")
	f.Bool("local", true, "with --report: also add the address to this host's set, for --timeout")
	f.String("backend", "ipset", "with --report --local: the kernel backend of this host's sets: ipset or nft")
	f.String("nft-table", "inet vallum", "with --report --local and nft: FAMILY TABLE of the sets")
}

func flagBool(cmd *cobra.Command, name string) bool {
	b, _ := cmd.Flags().GetBool(name)
	return b
}

// reportBan publishes a report of p on list l under the login's own name
// and, with --local, bans p in this host's set at once: the attacker is
// stopped where it was seen, and everywhere once the keeper's quorum is
// reached. The report goes first: a host whose set is missing still
// reports.
func reportBan(cmd *cobra.Command, c config, l bridge.List, p netip.Prefix) error {
	if err := wire.ValidReporter(c.User); err != nil {
		return fmt.Errorf("--report needs a login (-u) to report under: %w", err)
	}
	if err := guard.New(nil, 0, 0).Check(p); err != nil {
		return fmt.Errorf("refusing to report %s: %w", p, err)
	}
	ttl, err := parseTimeout(flagString(cmd, "timeout"))
	if err != nil {
		return err
	}
	cl, err := c.dial("cli")
	if err != nil {
		return err
	}
	defer cl.Disconnect(250)
	if err := publishReport(cl, c.User, l.Root, p, ttl); err != nil {
		return err
	}
	if !flagBool(cmd, "local") {
		return nil
	}
	return c.banLocally(l, p, ttl)
}

// publishReport publishes a report of p for ttl on list root under login
// user's name (the scan sensor's --sensor-report too).
func publishReport(cl mqtt.Client, user, root string, p netip.Prefix, ttl wire.Timeout) error {
	line := wire.FormatPrefix(p) + " timeout " + strconv.FormatInt(int64(ttl), 10)
	topic := wire.ReportTopic(user, root)
	if err := wait(cl.Publish(topic, 1, false, line), "publish report"); err != nil {
		if !cl.IsConnected() {
			return fmt.Errorf("%w (the broker closed the connection: may this login report on %s?)", err, topic)
		}
		return err
	}
	return nil
}

// banLocally adds p to this host's set of list l (as -t maps it) for ttl.
func (c config) banLocally(l bridge.List, p netip.Prefix, ttl wire.Timeout) error {
	if lists, err := c.lists(); err == nil {
		for _, m := range lists {
			if m.Root == l.Root {
				l = m
			}
		}
	}
	set := l.Set4
	if bridge.FamilyOf(p) == bridge.IPv6 {
		set = l.Set6
	}
	if c.Backend != "ipset" && c.Backend != "nft" && c.Backend != "auto" {
		c.Backend = "ipset"
	}
	be, err := newBackend(c, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("reported, but not banned here: %w", err)
	}
	defer be.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := be.Ensure(ctx, bridge.SetSpec{Name: set, Family: bridge.FamilyOf(p)}); err != nil {
		return fmt.Errorf("reported, but not banned here: set %s: %w", set, err)
	}
	// Keep: an entry there already (a shared ban, maybe longer) stays as it is.
	op := bridge.Op{Action: bridge.Add, Prefix: p, Timeout: ttl, Comment: CommentReport, Keep: true}
	if err := be.Apply(ctx, set, []bridge.Op{op}); err != nil && !errors.Is(err, bridge.ErrExists) {
		return fmt.Errorf("reported, but not banned here: set %s: %w", set, err)
	}
	return nil
}
