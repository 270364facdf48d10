package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

func newCheckConfigCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "check-config",
		Short: "Check the configuration and print it as vallum sees it (passwords hidden)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, log, err := setup(cmd)
			if err != nil {
				return err
			}
			bo, err := c.bridgeOptions(log)
			if c.embedded() {
				_, berr := c.brokerOptions(bo.Lists, log)
				err = errors.Join(err, berr)
			}
			printConfig(cmd.OutOrStdout(), c, bo.ClientID, bo.Broker)
			if err != nil {
				return fmt.Errorf("configuration is not valid:\n%w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "# configuration OK")
			return nil
		},
	}
	connFlags(c.Flags())
	daemonFlags(c.Flags())
	brokerFlags(c.Flags())
	return c
}

func printConfig(w io.Writer, c config, clientID, url string) {
	if c.Password != "" {
		c.Password = "(hidden)"
	}
	c.ClientID = clientID
	fmt.Fprintf(w, "# config file: %s\n", orFlags(c.file))
	if c.embedded() {
		fmt.Fprintln(w, "# broker: embedded")
	} else {
		fmt.Fprintf(w, "# broker: %s\n", url)
	}
	b, _ := yaml.Marshal(c)
	w.Write(b)
}
