//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
)

// TestKeeperBurstPastInflight: a standalone keeper on a mosquitto that
// lets only a few messages be in flight to a client (max_inflight_messages,
// 20 by mosquitto's default) takes a burst of many more event messages
// than that, published at once, and cuts every ban of it. The keeper holds
// a burst's acknowledgements until its cut: were it to wait for more input
// before it cuts, the broker, its window full, would send none, and the
// last bans would never reach the list.
func TestKeeperBurstPastInflight(t *testing.T) {
	const msgs, per, inflight = 120, 300, 20
	l, dir := newLab(t)
	b := &hub{h: addHost(t, l, "hub"), dir: dir}
	b.proc = must[*lab.Proc](t)(b.h.StartMosquittoWith(dir, hubPort, true, fmt.Sprintf("max_inflight_messages %d\n", inflight)))
	kh := addHost(t, l, "k1")
	startKeeper(t, kh, b, dir, "k1")
	c := must[mqtt.Client](t)(b.h.Connect(hubPort, mqtt.NewClientOptions().SetClientID("burster")))
	defer c.Disconnect(100)
	want := make([]string, 0, msgs*per)
	toks := make([]mqtt.Token, 0, msgs)
	for m := range msgs { // all at once: the broker queues what its window has no room for
		var sb strings.Builder
		for i := m * per; i < (m+1)*per; i++ {
			sb.WriteString(banAddr(i).String() + "\n")
			want = append(want, banAddr(i).String())
		}
		toks = append(toks, c.Publish(root+"/add", 1, false, sb.String()))
	}
	for m, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish burst %d: %v", m, tok.Error())
		}
	}
	waitBrokerHolds(t, b, time.Minute, want)
}
