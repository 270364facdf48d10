package broker

import (
	"strings"
	"testing"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/store"
	"github.com/vallum/vallum/internal/wire"
)

// TestStoreSkipsInlineAndAcks: the keeper's inline subscriptions, the
// PUBACKs owed to a QoS 1 publisher and the chunks of a compact list in
// flight to a host never reach the file; a network client's persistent
// subscription and the bans in flight to it do.
func TestStoreSkipsInlineAndAcks(t *testing.T) {
	o := Options{Listeners: []Listener{local(KindTCP)}, Lists: []string{"blacklist"},
		DataDir: t.TempDir(), Logger: testLogger(t)}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop := runBroker(t, b)
	u := url(t, b, KindTCP)
	host := mustDial(t, u, withSession("host1"))
	host.sub(t, "blacklist/#", 1)
	host.sub(t, wire.ChunksFilter("blacklist"), 1)
	host.Disconnect(50)
	pub := mustDial(t, u)
	pub.pub(t, "blacklist/ban/192.0.2.1", 1, true, `{"at":1}`)
	pub.pub(t, wire.ChunkTopic("blacklist", 1, 0), 1, false, "a chunk")
	pub.Disconnect(50)
	stop()

	s, err := store.Open(datadir.Dir(o.DataDir).Store(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var subs, acks []string
	var queued int
	if err := s.Scan("", func(k string, v []byte) error {
		switch {
		case strings.HasPrefix(k, "SUB_"):
			subs = append(subs, k)
		case strings.HasPrefix(k, "IFM_host1:"):
			queued++
			if !strings.Contains(string(v), `"topic_name":"blacklist/ban/192.0.2.1"`) {
				t.Errorf("queued for host1: %s, want only the ban", v)
			}
		case strings.HasPrefix(k, "IFM_"):
			acks = append(acks, k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 || subs[0] != "SUB_host1:blacklist/#" {
		t.Errorf("stored subscriptions %q, want only host1's", subs)
	}
	// One copy, or two: mochi sends retained messages to a new
	// subscription after its SUBACK, so a ban published in that instant
	// reaches host1 both live and retained (QoS 1 allows the duplicate).
	if queued < 1 || queued > 2 {
		t.Errorf("%d messages queued for host1 in the store, want the ban (once, or twice)", queued)
	}
	if len(acks) != 0 {
		t.Errorf("other in-flight records stored: %q", acks)
	}
}
