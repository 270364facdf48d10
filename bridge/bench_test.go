package bridge

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// BenchmarkParsePayload parses event payloads of 1 and 1,000 lines, as a
// single ban and a bulk feed send them, and reports lines per second.
func BenchmarkParsePayload(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("lines=%d", n), func(b *testing.B) {
			var sb strings.Builder
			for i := range n {
				a := netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
				fmt.Fprintf(&sb, "%s timeout 3600\n", a)
			}
			payload := []byte(sb.String())
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				lines, errs := wire.ParsePayload(payload)
				if len(lines) != n || len(errs) != 0 {
					b.Fatalf("ParsePayload = %d lines, %v; want %d lines", len(lines), errs, n)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// BenchmarkParseTopic parses the three kinds of topic a list receives.
func BenchmarkParseTopic(b *testing.B) {
	for _, topic := range []string{"blacklist/add", "blacklist/del", "blacklist/ban/198.51.100.0/24"} {
		b.Run(topic, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := wire.ParseTopic("blacklist", topic); err != nil {
					b.Fatalf("ParseTopic(%q): %v", topic, err)
				}
			}
		})
	}
}

// BenchmarkBridgeSingle measures the bridge's own cost per message: one
// address per QoS 1 message through a real mochi broker and paho, into the
// recording backend (no kernel).
func BenchmarkBridgeSingle(b *testing.B) {
	_, url := startBroker(b, nil)
	f := newFake()
	r := startBridge(b, url, f, func(o *Options) { o.ClientID = "bench" })
	deadline := time.Now().Add(10 * time.Second)
	for r.b.stats.Syncs.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("bench-pub").SetMaxResumePubInFlight(1000))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer pub.Disconnect(10)
	b.ResetTimer()
	for i := range b.N {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		pub.Publish("bl/add", 1, false, a.String())
	}
	for f.count("bl") < b.N && time.Now().Before(deadline.Add(time.Minute)) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkCanonical is the one-spelling check every state message passes.
func BenchmarkCanonical(b *testing.B) {
	for _, s := range []string{"198.51.100.0/24", "2001:db8::7"} {
		p, err := wire.ParsePrefix(s)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !canonical(s, p) {
					b.Fatalf("%s not canonical", s)
				}
			}
		})
	}
}
