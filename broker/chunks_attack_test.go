package broker

import (
	"net/netip"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// TestAttackChunks: the list's chunks and manifest say what every late
// joiner bans. A reporter or a host that forges a chunk or a manifest (to
// ban or unban anything), or deletes the manifest, is refused; hosts and
// reporters read the manifest and chunks of their lists and of no other.
func TestAttackChunks(t *testing.T) {
	b, u, logs := fleet(t, Limits{})
	man := wire.ManifestTopic("blacklist")
	watch := mustDial(t, u, withUser("edge1", "edge1"))
	watch.sub(t, man, 1)
	watch.sub(t, wire.ChunksFilter("blacklist"), 1)
	m := watch.until(t, man, 5*time.Second)
	if _, err := wire.DecodeManifest([]byte(m.payload)); err != nil {
		t.Fatalf("manifest of blacklist: %q (%v), want the hub keeper's", m.payload, err)
	}

	// A chunk banning 0.0.0.0/1, and a manifest naming it.
	const gen = 0x7fffffffffffffff
	chunk := wire.EncodeChunk(wire.Chunk{Root: "blacklist", Gen: gen, Count: 1, Entries: []wire.Entry{
		{Prefix: netip.MustParsePrefix("0.0.0.0/1"), State: wire.State{At: time.Now()}}}})
	forged := wire.EncodeManifest(wire.Manifest{Epoch: "0000000000000000", Gen: gen, Cut: time.Now(), Entries: 1,
		CRC: []uint32{wire.ChunkCRC(chunk)}})
	ct := wire.ChunkTopic("blacklist", gen, 0)
	for _, user := range []string{"rep", "edge2", "other"} {
		evil := mustDial(t, u, withUser(user, user))
		evil.Publish(ct, 0, true, chunk)
		evil.Publish(man, 0, true, forged)
		evil.Publish(man, 0, true, "")
		evil.Publish(man, 1, true, forged) // MQTT 3.1.1: refused by disconnecting
		wantRefusal(t, b, logs, refPublish, "user="+user, "topic="+man)
		wantRefusal(t, b, logs, refPublish, "user="+user, "topic="+ct)
	}
	other := mustDial(t, u, withUser("other", "other"))
	other.sub(t, wire.ManifestTopic("site2/blacklist"), 1)
	other.sub(t, wire.ChunksFilter("site2/blacklist"), 1)
	for _, f := range []string{man, wire.ChunksFilter("blacklist"), ct, wire.ChunkPrefix + "#", wire.ManifestPrefix + "#",
		wire.ChunkPrefix + "site2/#"} {
		tok := other.Subscribe(f, 1, nil)
		if err := wait(t, tok, "subscribe "+f); err != nil {
			t.Fatal(err)
		}
		if code := tok.(*paho.SubscribeToken).Result()[f]; code < 0x80 {
			t.Errorf("reporter of site2/blacklist subscribing to %s: granted (%#x), want refused", f, code)
		}
	}
	late := mustDial(t, u, withUser("admin", "admin"))
	got := drain(t, late, "vallum/#")
	if got[man] != m.payload {
		t.Errorf("manifest after the attacks: %q, want the keeper's %q", got[man], m.payload)
	}
	if _, ok := got[ct]; ok {
		t.Errorf("the forged chunk %s is retained", ct)
	}
	for len(watch.msgs) > 0 { // the manifest may have come twice: retained and live
		if m2 := <-watch.msgs; m2.topic != man || m2.payload != m.payload {
			t.Errorf("host got %s %q after the attacks, want the keeper's manifest only", m2.topic, m2.payload)
		}
	}
}
