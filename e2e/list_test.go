//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

// TestListWholeList: `vallum list` on another host prints all of 100,000
// retained bans, from mosquitto and from the embedded broker. It printed
// "0 active bans" and exited 0.
func TestListWholeList(t *testing.T) {
	const n = 100000
	eachBroker(t, func(t *testing.T, l *lab.Lab, b *hub, dir string) {
		host := addHost(t, l, "host")
		now := time.Now()
		pub := b.publisher(t)
		for i := range n {
			pub.Publish(stateTopic(i), true, ban(i, now, now.Add(time.Hour)).Payload)
		}
		if err := pub.Close(); err != nil {
			t.Fatal(err)
		}
		out, err := host.Exec(vallumBin, "list", root, "-h", b.h.Addr4)
		if err != nil {
			t.Fatalf("vallum list: %v", err)
		}
		if want := fmt.Sprintf("\n%d active bans", n); !strings.Contains(out, want) {
			t.Fatalf("vallum list ends with %q, want %q", out[max(0, len(out)-80):], want)
		}
		for _, i := range []int{0, n / 2, n - 1} {
			if !strings.Contains(out, "\n"+banAddr(i).String()+" ") {
				t.Errorf("vallum list lacks %s", banAddr(i))
			}
		}
	})
}
