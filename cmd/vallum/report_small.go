//go:build vallum_small && (mips || mipsle)

package main

import (
	"errors"
	"io"
	"net/netip"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/retained"
	"github.com/vallum/vallum/internal/wire"
)

// Reports (`vallum ban --report`) and `vallum list --pending` are not in
// the 32-bit MIPS router builds, for size: a router reports nothing
// (OpenWrt has no fail2ban); a host of the fleet does.

var errNoReports = errors.New("reports are not in the MIPS router builds")

const reportsBuilt = false

func publishReport(mqtt.Client, string, string, netip.Prefix, wire.Timeout) error {
	return errNoReports
}

func (c config) banLocally(bridge.List, netip.Prefix, wire.Timeout) error { return errNoReports }

func reportFlags(f *pflag.FlagSet) { f.Bool("report", false, "not in this build") }

func flagBool(cmd *cobra.Command, name string) bool {
	b, _ := cmd.Flags().GetBool(name)
	return b
}

func reportBan(*cobra.Command, config, bridge.List, netip.Prefix) error { return errNoReports }

type pendingEntry struct{}

func collectPending(mqtt.Client, string, io.Writer, retained.Timing) ([]pendingEntry, error) {
	return nil, errNoReports
}

func printPending(io.Writer, []pendingEntry) {}
