//go:build !(vallum_small && (mips || mipsle))

package main

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vallum/vallum/fail2ban"
)

func newFail2banCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "fail2ban-action",
		Short: "Print the fail2ban action (or an example jail) that bans through vallum",
		Example: `  vallum fail2ban-action > /etc/fail2ban/action.d/vallum.conf
  vallum fail2ban-action --jail sshd > /etc/fail2ban/jail.d/vallum-sshd.local
  vallum fail2ban-action --mqtt > /etc/fail2ban/action.d/vallum-mqtt.conf
  vallum fail2ban-action --report > /etc/fail2ban/action.d/vallum-report.conf`,
		Args: cobra.NoArgs,
		RunE: fail2banCmd,
	}
	c.Flags().Bool("mqtt", false, "print the mosquitto_pub action instead (events only: no state for late joiners)")
	c.Flags().Bool("report", false, "print the reporting variant instead (vallum-report.conf: reports to the keeper's quorum, bans here at once)")
	c.Flags().String("jail", "", "print the example jail NAME instead: "+strings.Join(fail2ban.Jails(), ", "))
	return c
}

func fail2banCmd(cmd *cobra.Command, _ []string) error {
	mqtt, _ := cmd.Flags().GetBool("mqtt")
	jail, _ := cmd.Flags().GetString("jail")
	var b []byte
	switch {
	case mqtt && jail != "":
		return errors.New("--mqtt and --jail: give one")
	case mqtt:
		b = fail2ban.MQTTAction()
	case flagBool(cmd, "report"):
		b = fail2ban.ReportAction()
	case jail != "":
		var err error
		if b, err = fail2ban.Jail(jail); err != nil {
			return err
		}
	default:
		b = fail2ban.Action()
	}
	_, err := cmd.OutOrStdout().Write(b)
	return err
}
