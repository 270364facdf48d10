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
)

// Reports (`vallum ban --report`) and `vallum list --pending` are not in
// the 32-bit MIPS router builds, for size: a router reports nothing
// (OpenWrt has no fail2ban); a host of the fleet does.

var errNoReports = errors.New("reports are not in the MIPS router builds")

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
