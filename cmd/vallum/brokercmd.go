package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/vallum/vallum/broker"
)

func newBrokerCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "broker",
		Short: "Run only the embedded MQTT broker (a hub for other hosts)",
		Example: `  vallum broker --listen 0.0.0.0:8883 --tls-cert c.pem --tls-key k.pem --users users.yaml
  vallum broker --listen tls://0.0.0.0:8883 --listen ws://127.0.0.1:8080 --users users.yaml -t blacklist`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, log, err := setup(cmd)
			if err != nil {
				return err
			}
			lists, _ := c.lists() // optional here: the keeper's lists
			g, ctx := errgroup.WithContext(cmd.Context())
			if _, err := startBroker(ctx, g, c, lists, nil, log); err != nil {
				return err
			}
			onHUP(ctx, log, nil)
			return g.Wait()
		},
	}
	brokerFlags(c.Flags())
	c.Flags().StringArrayP("topic", "t", nil, "list topic whose legacy events the broker keeps as state, repeatable")
	c.Flags().String("data-dir", "/var/lib/vallum", "directory for the broker's store")
	c.Flags().String("log-level", "info", "log level: debug, info, warn or error")
	c.Flags().String("log-format", "text", "log format: text or json")
	c.AddCommand(&cobra.Command{
		Use:   "hash-password",
		Short: "Read a password on standard input and print its bcrypt hash for the users file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			pw := strings.TrimRight(line, "\r\n")
			if pw == "" {
				return errors.Join(errors.New("no password on standard input"), err)
			}
			h, err := broker.HashPassword(pw)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	})
	return c
}
