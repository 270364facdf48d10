package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vallum [flags]",
		Short: "Share one ban list between the firewalls of many hosts over MQTT",
		Long: `vallum subscribes to MQTT topics named after kernel sets and applies
<list>/add and <list>/del messages, and the ban state kept on the broker, to
ipsets or nftables sets. With no -h it runs its own broker on 127.0.0.1:1883.

  vallum -t blacklist                      embedded broker, bridge on it
  vallum -h broker.example -t blacklist    the vallumd command line`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          runDaemonCmd,
	}
	// -h is the broker host, as in vallumd: help is --help only, and -V
	// is the version, so both are defined here before cobra adds its own.
	root.PersistentFlags().Bool("help", false, "help for vallum")
	root.PersistentFlags().BoolP("version", "V", false, "print the version and exit")
	root.PersistentFlags().String("config", "", "YAML config file (default "+defaultConfigFile+" when it exists; env VALLUM_CONFIG)")
	connFlags(root.Flags())
	daemonFlags(root.Flags())
	brokerFlags(root.Flags())
	root.AddCommand(newRunCmd(), newBrokerCmd(), newCheckConfigCmd(), newVersionCmd(),
		newBanCmd(), newUnbanCmd(), newListCmd(), newDoctorCmd(), newFail2banCmd())
	if c := newAllowCmd(); c != nil { // nil: not in the MIPS builds (allow_small.go)
		root.AddCommand(c)
	}
	if keeperBuilt {
		root.AddCommand(newKeeperCmd())
	}
	if importBuilt {
		root.AddCommand(newImportCmd())
	}
	return root
}

// newRunCmd is the daemon by its explicit name: `vallum run` = `vallum`.
func newRunCmd() *cobra.Command {
	c := &cobra.Command{Use: "run", Short: "Run the daemon (the default command)", Args: cobra.NoArgs, RunE: runDaemonCmd}
	connFlags(c.Flags())
	daemonFlags(c.Flags())
	brokerFlags(c.Flags())
	return c
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{Use: "version", Short: "Print the version", Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "vallum", versionString()) }}
}

// printVersion handles -V on any command; it reports whether it did.
func printVersion(cmd *cobra.Command) bool {
	if v, _ := cmd.Flags().GetBool("version"); v {
		fmt.Fprintln(cmd.OutOrStdout(), "vallum", versionString())
		return true
	}
	return false
}
