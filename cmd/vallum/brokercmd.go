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
  vallum broker --listen tls://0.0.0.0:8883 --listen ws://127.0.0.1:8080 --users users.yaml -t blacklist
  vallum broker --listen 0.0.0.0:1883 --users users.yaml -t blacklist --web 127.0.0.1:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, log, err := setup(cmd)
			if err != nil {
				return err
			}
			// Optional here: the keeper keeps these and the lists the
			// users file names (broker/README.md, The keeper).
			lists, err := c.lists()
			if len(c.Topic) > 0 && err != nil {
				return err
			}
			g, ctx := errgroup.WithContext(cmd.Context())
			if _, err := startBroker(ctx, g, c, lists, nil, log); err != nil {
				return portInUse(err, false)
			}
			onHUP(ctx, log, "SIGHUP: nothing to do; the broker reads its configuration and users file at start only, restart it to change them", nil)
			return g.Wait()
		},
	}
	brokerFlags(c.Flags())
	c.Flags().StringArrayP("topic", "t", nil, "list the broker serves and keeps (its keeper also keeps the lists the users file names), repeatable")
	c.Flags().String("data-dir", "/var/lib/vallum", "directory for the broker's store")
	c.Flags().String("log-level", "info", "log level: debug, info, warn or error")
	c.Flags().String("log-format", "text", "log format: text or json")
	c.AddCommand(newAddUserCmd(), &cobra.Command{
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

func newAddUserCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "add-user NAME",
		Short: "Add a user to the broker's users file, or set a user's password",
		Long: `Adds NAME to the users file (--users, or the users: key of the config
file), creating the file when missing, or gives an existing user a new
password. The password is read from standard input (one line), or asked
for twice when standard input is a terminal; never from the command line.
The file keeps its comments and other users; a running broker reads it at
start, so restart it after a change.`,
		Example: `  vallum broker add-user edge1 --users /etc/vallum/users.yaml            # asks for the password
  vallum broker add-user fail2ban --role reporter --users users.yaml < pw.txt
  vallum broker add-user site1-fw --role host --list site1/blacklist --users users.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: addUserCmd,
	}
	c.Flags().String("users", "", "the users file (default: users: of the config file)")
	c.Flags().String("role", broker.RoleHost, "role of a new user: host (a bridge), reporter (bans and reads) or admin")
	c.Flags().StringArray("list", nil, "list root the role is limited to, repeatable (default: every list of the broker)")
	return c
}

func addUserCmd(cmd *cobra.Command, args []string) error {
	c, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	if c.Users == "" {
		return errors.New("no users file: give --users FILE")
	}
	pw, err := readNewPassword(cmd, args[0])
	if err != nil {
		return err
	}
	hash, err := broker.HashPassword(pw)
	if err != nil {
		return err
	}
	role, _ := cmd.Flags().GetString("role")
	lists, _ := cmd.Flags().GetStringArray("list")
	added, err := broker.SetUser(c.Users, broker.User{Name: args[0], Password: hash, Role: role, Lists: lists})
	if err != nil {
		return err
	}
	what := "password of " + args[0] + " changed (role and lists as they were)"
	if added {
		what = "user " + args[0] + " added with role " + role
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s in %s; restart the broker to use it\n", what, c.Users)
	return nil
}
