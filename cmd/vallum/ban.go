package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/wire"
)

func newBanCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "ban LIST ADDRESS[/PREFIX]",
		Short: "Ban an address on every host of a list (kept by the broker for late joiners)",
		Example: `  vallum ban blacklist 203.0.113.7 --timeout 1h --reason sshd
  vallum -h hub.example ban blacklist 2001:db8::/64`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error { return banCmd(cmd, args, bridge.Add) },
	}
	connFlags(c.Flags())
	c.Flags().String("timeout", "0", "how long: seconds or a duration (3600, 90m, 1h, 7d); 0 or -1 (fail2ban's) is permanent")
	c.Flags().String("reason", "", "why, such as the fail2ban jail")
	reportFlags(c.Flags())
	return c
}

func newUnbanCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "unban LIST ADDRESS[/PREFIX]",
		Short: "Lift a ban on every host of a list",
		Args:  cobra.ExactArgs(2),
		RunE:  func(cmd *cobra.Command, args []string) error { return banCmd(cmd, args, bridge.Del) },
	}
	connFlags(c.Flags())
	return c
}

// banCmd publishes the retained state, then the event for vallumd-style
// subscribers. In that order the embedded broker's keeper finds the state
// already there and writes nothing more; a bridge marks the entry as state
// whichever of the two it gets first.
func banCmd(cmd *cobra.Command, args []string, action bridge.Action) error {
	c, _, err := setup(cmd)
	if err != nil {
		return err
	}
	l, err := bridge.ParseList(args[0])
	if err != nil {
		return err
	}
	p, err := wire.ParsePrefix(args[1])
	if err != nil {
		return err
	}
	if action == bridge.Add && flagBool(cmd, "report") {
		return reportBan(cmd, c, l, p) // report.go
	}
	event := wire.FormatPrefix(p)
	var state []byte // empty: the retained state is deleted
	if action == bridge.Add {
		if err := guard.New(nil, 0, 0).Check(p); err != nil {
			return fmt.Errorf("refusing to ban %s: %w", p, err)
		}
		ttl, err := parseTimeout(flagString(cmd, "timeout"))
		if err != nil {
			return err
		}
		st := wire.State{At: time.Now(), Reason: flagString(cmd, "reason"), Origin: hostname()}
		if ttl > 0 {
			st.Expires = st.At.Add(time.Duration(ttl) * time.Second)
		}
		state = wire.EncodeState(st)
		event += " timeout " + strconv.FormatInt(int64(ttl), 10)
	}
	cl, err := c.dial("cli")
	if err != nil {
		return err
	}
	defer cl.Disconnect(250)
	if action == bridge.Del {
		if held, known := banned(cl, wire.StateTopic(l.Root, p)); known && !held {
			fmt.Fprintf(cmd.ErrOrStderr(), "vallum: %s is not banned on %s (the broker holds no ban for it); "+
				"the unban event is sent anyway, for hosts that banned it from a legacy event\n", event, l.Root)
		}
	}
	err = wait(cl.Publish(wire.StateTopic(l.Root, p), 1, true, state), "publish state")
	if err == nil {
		err = wait(cl.Publish(wire.EventTopic(l.Root, action.Kind()), 1, false, event), "publish event")
	}
	if err != nil && !cl.IsConnected() {
		// With MQTT 3.1.1 a broker refuses a topic by dropping the client.
		return fmt.Errorf("%w (the broker closed the connection: may this user publish to %s/...? a host-only user may not ban)", err, l.Root)
	}
	return err
}

// parseTimeout reads seconds ("3600"), a Go duration ("90m", "1h") or days
// ("7d"). 0 and -1 mean permanent; longer than the kernel maximum is clamped.
func parseTimeout(s string) (wire.Timeout, error) {
	s = strings.TrimSpace(s)
	if s == "-1" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return min(wire.Timeout(n), wire.MaxTimeout), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseInt(days, 10, 64); err == nil && n >= 0 {
			return min(wire.Timeout(n)*86400, wire.MaxTimeout), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--timeout %q: want seconds or a duration such as 3600, 90m, 1h or 7d", s)
	}
	return wire.ClampTimeout(d), nil
}

// cliPingTimeout: the embedded hub reads a client's packets in order and
// answers a PINGREQ only once its keeper took the publishes before it; a
// 1,000,000-line import into a hub on two loaded cores waited over paho's
// 10 s default and lost its connection. Each command bounds its own waits
// for acknowledgements (wait, ackWait), which find a dead broker anyway.
const cliPingTimeout = 2 * time.Minute

// dial connects a short-lived client with a clean session and an id of its
// own, so that it never takes over the daemon's session.
func (c config) dial(role string) (mqtt.Client, error) {
	urls, err := c.brokerURLs()
	if c.embedded() {
		urls, err = []string{"tcp://127.0.0.1:" + strconv.Itoa(c.Port)}, nil
	}
	if err != nil {
		return nil, err
	}
	pw, err := c.password()
	if err != nil {
		return nil, err
	}
	t, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	id := make([]byte, 6)
	rand.Read(id)
	o := mqtt.NewClientOptions().SetClientID("vallum-" + role + "-" + hex.EncodeToString(id)).
		SetUsername(c.User).SetPassword(pw).SetTLSConfig(t).SetCleanSession(true).
		SetProtocolVersion(4).SetConnectTimeout(10 * time.Second).SetAutoReconnect(false).
		SetPingTimeout(cliPingTimeout)
	for _, u := range urls { // paho tries them in turn
		o.AddBroker(u)
	}
	cl := mqtt.NewClient(o)
	if err := wait(cl.Connect(), "connect to "+strings.Join(urls, ",")); err != nil {
		return nil, tlsHint(err, urls[0])
	}
	return cl, nil
}

func wait(t mqtt.Token, what string) error {
	if !t.WaitTimeout(15 * time.Second) {
		return fmt.Errorf("%s: timed out", what)
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func flagString(cmd *cobra.Command, name string) string {
	s, _ := cmd.Flags().GetString(name)
	return s
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
