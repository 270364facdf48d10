package wire

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestManifestRoundTrip(t *testing.T) {
	m := Manifest{Epoch: EpochV2("0123456789abcdef"), Gen: 0x19ad6f3c2a1, Cut: time.UnixMilli(1764500000123),
		Entries: 5000, CRC: []uint32{0x1a2b3c4d, 0}}
	got, err := DecodeManifest(EncodeManifest(m))
	if err != nil {
		t.Fatal(err)
	}
	if got.Epoch != m.Epoch || got.Gen != m.Gen || !got.Cut.Equal(m.Cut) || got.Entries != 5000 ||
		len(got.CRC) != 2 || got.CRC[0] != 0x1a2b3c4d || got.CRC[1] != 0 {
		t.Fatalf("got %+v, want %+v", got, m)
	}
	if !strings.Contains(string(EncodeManifest(m)), `"crc":["1a2b3c4d","00000000"]`) {
		t.Errorf("checksums not spelled as 8 hex digits: %s", EncodeManifest(m))
	}
}

// A manifest that lies about its chunks, comes from another version, or
// is not JSON is refused with ErrBadPayload; a reader never guesses.
func TestManifestRefused(t *testing.T) {
	good := `"epoch":"0123456789abcdef","gen":"0000019ad6f3c2a1","cut":1764500000123`
	for name, p := range map[string]string{
		"version 2":      `{"v":2,` + good + `,"chunks":0,"entries":0,"crc":[]}`,
		"count mismatch": `{"v":1,` + good + `,"chunks":2,"entries":1,"crc":["00000000"]}`,
		"too many":       `{"v":1,` + good + `,"chunks":1,"entries":4097,"crc":["00000000"]}`,
		"bad crc":        `{"v":1,` + good + `,"chunks":1,"entries":1,"crc":["xyz"]}`,
		"short gen":      `{"v":1,"epoch":"0123456789abcdef","gen":"19ad","cut":1,"chunks":0,"entries":0,"crc":[]}`,
		"bad epoch":      `{"v":1,"epoch":"v3:0123456789abcdef","gen":"0000019ad6f3c2a1","cut":1,"chunks":0,"entries":0,"crc":[]}`,
		"no cut":         `{"v":1,"epoch":"0123456789abcdef","gen":"0000019ad6f3c2a1","chunks":0,"entries":0,"crc":[]}`,
		"not json":       `chunks`,
		"huge":           strings.Repeat(" ", maxManifestPayload+1),
	} {
		if _, err := DecodeManifest([]byte(p)); !errors.Is(err, ErrBadPayload) {
			t.Errorf("%s: err %v, want ErrBadPayload", name, err)
		}
	}
}

func TestChunkTopics(t *testing.T) {
	topic := ChunkTopic("site/blacklist", 0x19ad6f3c2a1, 12)
	if topic != "vallum/list/site/blacklist/0000019ad6f3c2a1/12" {
		t.Fatalf("ChunkTopic = %q", topic)
	}
	if g, n, ok := ParseChunkTopic("site/blacklist", topic); !ok || g != 0x19ad6f3c2a1 || n != 12 {
		t.Errorf("ParseChunkTopic = %x %d %v", g, n, ok)
	}
	for _, bad := range []string{
		"vallum/list/site/blacklist/0000019ad6f3c2a1/012", // one spelling per index
		"vallum/list/site/blacklist/0000019ad6f3c2a1/-1",
		"vallum/list/site/blacklist/19ad6f3c2a1/1",
		"vallum/list/site/blacklist/x/0000019ad6f3c2a1/1", // another list's chunk
		"vallum/list/site/0000019ad6f3c2a1/1",
		"vallum/manifest/site/blacklist",
	} {
		if _, _, ok := ParseChunkTopic("site/blacklist", bad); ok {
			t.Errorf("ParseChunkTopic(%q) accepted", bad)
		}
	}
}

// The v2 spelling is valid for this release and refused by the previous
// one's check (16 hex digits, as ValidEpoch was): what makes old hosts
// keep their bans when the list has no per-ban state for every ban.
func TestEpochV2(t *testing.T) {
	e := EpochV2("0123456789abcdef")
	if e != "v2:0123456789abcdef" || EpochV2(e) != e || !IsEpochV2(e) || IsEpochV2("0123456789abcdef") {
		t.Fatalf("EpochV2 = %q", e)
	}
	if !ValidEpoch(e) || ValidEpoch("v2:0123") || ValidEpoch("v3:0123456789abcdef") {
		t.Error("ValidEpoch and the v2 spelling disagree")
	}
	if len(e) == 16 {
		t.Error("a v2 epoch must not pass the previous release's 16-digit check")
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(EncodeManifest(Manifest{Epoch: "0123456789abcdef", Gen: 1, Cut: time.UnixMilli(1), CRC: []uint32{7}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		again, err := DecodeManifest(EncodeManifest(m))
		if err != nil || again.Gen != m.Gen || len(again.CRC) != len(m.CRC) || again.Entries != m.Entries {
			t.Fatalf("round trip: %v %+v %+v", err, m, again)
		}
	})
}

// The deltas announced round-trip, and a manifest of a keeper of an
// earlier release (no "deltas") still reads, announcing none.
func TestManifestDeltas(t *testing.T) {
	m := Manifest{Epoch: EpochV2("0123456789abcdef"), Gen: 7, Cut: time.UnixMilli(1764500000000), CRC: []uint32{1},
		Deltas: &Deltas{Upto: time.UnixMilli(1764500009000), DeltaSum: DeltaSum{Count: 3, Sum: 0xfedcba9876543210}}}
	b := EncodeManifest(m)
	if !strings.Contains(string(b), `"deltas":{"upto":1764500009000,"n":3,"xor":"fedcba9876543210"}`) {
		t.Errorf("deltas spelt %s", b)
	}
	got, err := DecodeManifest(b)
	if err != nil || got.Deltas == nil || *got.Deltas != *m.Deltas {
		t.Fatalf("round trip: %v %+v", err, got.Deltas)
	}
	old := `{"v":1,"epoch":"0123456789abcdef","gen":"0000019ad6f3c2a1","cut":1764500000123,"chunks":0,"entries":0,"crc":[]}`
	if got, err := DecodeManifest([]byte(old)); err != nil || got.Deltas != nil || got.Covers(1764500000124) {
		t.Errorf("a manifest without deltas: %v %+v", err, got.Deltas)
	}
	for _, bad := range []string{`{"upto":1,"n":-1,"xor":"0000000000000000"}`, `{"upto":0,"n":0,"xor":"0000000000000000"}`,
		`{"upto":1,"n":0,"xor":"00"}`, `{"upto":1,"n":0,"xor":"zz00000000000000"}`, `"x"`} {
		if _, err := DecodeManifest([]byte(old[:len(old)-1] + `,"deltas":` + bad + `}`)); !errors.Is(err, ErrBadPayload) {
			t.Errorf("deltas %s: err %v, want ErrBadPayload", bad, err)
		}
	}
}

// The digest is of a set: the order of the states does not count; a
// state missing, one more, or one of another version does.
func TestDeltaSum(t *testing.T) {
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	states := []struct {
		p  netip.Prefix
		at int64
	}{{p("203.0.113.7/32"), 1000}, {p("2001:db8::/64"), 1001}, {p("198.51.100.0/24"), 1002}, {p("203.0.113.8/32"), 1000}}
	var fwd, back DeltaSum
	for i := range states {
		fwd.Add(states[i].p, states[i].at)
		back.Add(states[len(states)-1-i].p, states[len(states)-1-i].at)
	}
	if fwd != back || fwd.Count != 4 {
		t.Fatalf("order counts: %+v %+v", fwd, back)
	}
	var short, other DeltaSum
	for i, s := range states {
		if i != 2 {
			short.Add(s.p, s.at)
		}
		at := s.at
		if i == 0 {
			at++
		}
		other.Add(s.p, at)
	}
	if short.Sum == fwd.Sum || short.Count == fwd.Count || other.Sum == fwd.Sum {
		t.Errorf("a missing state or another version went unseen: %+v %+v %+v", fwd, short, other)
	}
	if DeltaHash(p("203.0.113.7/32"), 1) == DeltaHash(p("203.0.113.0/24"), 1) {
		t.Error("the prefix length is not in the hash")
	}
	m := Manifest{Cut: time.UnixMilli(1000), Deltas: &Deltas{Upto: time.UnixMilli(2000)}}
	if m.Covers(1000) || !m.Covers(1001) || !m.Covers(2000) || m.Covers(2001) {
		t.Error("Covers: want cut < at <= upto")
	}
}
