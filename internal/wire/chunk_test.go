package wire

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestChunkRoundTrip(t *testing.T) {
	at := time.UnixMilli(1764500000123)
	c := Chunk{Root: "site1/blacklist", Gen: 1764500000999, Index: 2, Count: 3, Entries: []Entry{
		{netip.MustParsePrefix("203.0.113.9/32"), State{At: at, Expires: time.Unix(1764600000, 0), Reason: "sshd", Origin: "keeper"}},
		{netip.MustParsePrefix("2001:db8::/48"), State{At: at}},
	}}
	got, err := DecodeChunk(EncodeChunk(c))
	if err != nil {
		t.Fatal(err)
	}
	if got.Root != c.Root || got.Gen != c.Gen || got.Index != 2 || got.Count != 3 || len(got.Entries) != 2 {
		t.Fatalf("got %+v", got)
	}
	for i, e := range got.Entries {
		w := c.Entries[i]
		if e.Prefix != w.Prefix || !e.State.At.Equal(w.State.At) || !e.State.Expires.Equal(w.State.Expires) ||
			e.State.Reason != w.State.Reason || e.State.Origin != w.State.Origin {
			t.Errorf("entry %d: got %+v, want %+v", i, e, w)
		}
	}
}

// The escalation count travels in the chunk: a list read from chunks
// alone (after a cut) still shows it. A chunk with a count says VLC2; one
// without stays VLC1, byte for byte what readers of VLC1 read.
func TestChunkCount(t *testing.T) {
	at := time.UnixMilli(1764500000123)
	e := []Entry{
		{netip.MustParsePrefix("203.0.113.9/32"), State{At: at, Expires: time.Unix(1764600000, 0), Reason: "sshd", Origin: "keeper", Count: 3}},
		{netip.MustParsePrefix("2001:db8::/48"), State{At: at, Count: 1 << 30}},
		{netip.MustParsePrefix("2001:db8:1::/48"), State{At: at}},
	}
	b := EncodeChunk(Chunk{Root: "blacklist", Gen: 1, Count: 1, Entries: e})
	if string(b[:4]) != "VLC2" {
		t.Fatalf("magic %q, want VLC2", b[:4])
	}
	got, err := DecodeChunk(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range []int{3, 1 << 30, 0} {
		if got.Entries[i].State.Count != w {
			t.Errorf("entry %d: count %d, want %d", i, got.Entries[i].State.Count, w)
		}
	}
	e[0].State.Count, e[1].State.Count = 0, 0
	if b := EncodeChunk(Chunk{Root: "blacklist", Gen: 1, Count: 1, Entries: e}); string(b[:4]) != "VLC1" {
		t.Fatalf("no count: magic %q, want VLC1", b[:4])
	}
}

// A chunk the previous format's encoder wrote (at e4f76ea, before counts:
// its Count field was not written) still reads.
func TestChunkReadsVLC1(t *testing.T) {
	old, _ := hex.DecodeString("564c43310000019ad46550e700000000000000010000000209626c61636b6c6973740e20cb0071090000019ad4654d7b692da8c00473736864066b6565706572013020010db80000000000000000000000000000019ad4654d7b178263e9")
	c, err := DecodeChunk(old)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Entries) != 2 || c.Entries[0].Prefix != netip.MustParsePrefix("203.0.113.9/32") ||
		c.Entries[0].State.Reason != "sshd" || c.Entries[0].State.Count != 0 || c.Entries[1].Prefix != netip.MustParsePrefix("2001:db8::/48") {
		t.Fatalf("got %+v", c)
	}
}

// A count flag in a VLC1 chunk, a zero count, or an unknown flag is
// refused, with a valid checksum: VLC1 writers never set them.
func TestChunkRefusesBadFlags(t *testing.T) {
	one := []Entry{{netip.MustParsePrefix("203.0.113.9/32"), State{At: time.UnixMilli(1), Count: 2}}}
	reseal := func(b []byte, fix func([]byte)) []byte {
		body := append([]byte(nil), b[:len(b)-4]...)
		fix(body)
		return binary.BigEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
	}
	flags := 24 + 1 + 1 // header, root "b"
	v2 := EncodeChunk(Chunk{Root: "b", Gen: 1, Count: 1, Entries: one})
	for name, b := range map[string][]byte{
		"count in VLC1": reseal(v2, func(b []byte) { copy(b, "VLC1") }),
		"zero count":    reseal(v2, func(b []byte) { binary.BigEndian.PutUint32(b[len(b)-4:], 0) }),
		"unknown flag":  reseal(v2, func(b []byte) { b[flags] |= 1 << 5 }),
	} {
		if _, err := DecodeChunk(b); !errors.Is(err, ErrBadChunk) {
			t.Errorf("%s: err %v, want ErrBadChunk", name, err)
		}
	}
}

// A flipped bit or a truncated chunk is refused, never half applied.
func TestChunkRefusesDamage(t *testing.T) {
	c := Chunk{Root: "b", Gen: 1, Count: 1, Entries: []Entry{{netip.MustParsePrefix("198.51.100.0/24"), State{At: time.UnixMilli(1)}}}}
	good := EncodeChunk(c)
	flip := append([]byte(nil), good...)
	flip[30] ^= 1
	for name, b := range map[string][]byte{"flipped": flip, "truncated": good[:len(good)-5], "empty": nil} {
		if _, err := DecodeChunk(b); !errors.Is(err, ErrBadChunk) {
			t.Errorf("%s: err %v, want ErrBadChunk", name, err)
		}
	}
}

// A chunk with a prefix in another spelling than the canonical one
// (host bits set, v4-mapped IPv6), with a valid checksum, is refused: one
// spelling per ban, as for state topics.
func TestChunkRefusesNonCanonical(t *testing.T) {
	hostBits := func(b []byte) { b[24+1+1+2+3] = 9 } // header, root "b", flags, bits: 203.0.113.9/24
	for name, tc := range map[string]struct {
		p   string
		fix func([]byte)
	}{"host bits": {"203.0.113.0/24", hostBits}, "v4-mapped": {"::ffff:203.0.113.9/128", func([]byte) {}}} {
		c := Chunk{Root: "b", Gen: 1, Count: 1, Entries: []Entry{{netip.MustParsePrefix(tc.p), State{At: time.UnixMilli(1)}}}}
		b := EncodeChunk(c)
		body := b[:len(b)-4]
		tc.fix(body)
		b = binary.BigEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
		if _, err := DecodeChunk(b); !errors.Is(err, ErrBadChunk) {
			t.Errorf("%s: err %v, want ErrBadChunk", name, err)
		}
	}
}

// FuzzDecodeChunk: whatever the broker hands over, decoding neither
// panics nor returns a prefix in a non-canonical spelling or an index
// outside the chunk count.
func FuzzDecodeChunk(f *testing.F) {
	f.Add(EncodeChunk(Chunk{Root: "blacklist", Gen: 7, Count: 2, Index: 1, Entries: []Entry{
		{netip.MustParsePrefix("2001:db8::/32"), State{At: time.UnixMilli(5), Expires: time.Unix(9, 0), Reason: "r", Origin: "o"}}}}))
	f.Add(EncodeChunk(Chunk{Root: "blacklist", Gen: 7, Count: 1, Entries: []Entry{
		{netip.MustParsePrefix("203.0.113.0/24"), State{At: time.UnixMilli(5), Count: 4}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeChunk(b)
		if err != nil {
			return
		}
		if c.Index >= c.Count {
			t.Fatalf("index %d of %d", c.Index, c.Count)
		}
		for _, e := range c.Entries {
			if e.Prefix != e.Prefix.Masked() || e.Prefix.Addr().Is4In6() {
				t.Fatalf("non-canonical prefix %v", e.Prefix)
			}
			if e.State.Count < 0 {
				t.Fatalf("count %d", e.State.Count)
			}
		}
	})
}

// EncodeChunk sizes its buffer exactly: the keeper holds every chunk of a
// list, and append's growth would leave up to twice their size allocated.
func TestChunkExactSize(t *testing.T) {
	var es []Entry
	for i := range 300 {
		s := State{At: time.UnixMilli(int64(i) + 1), Origin: "keeper"}
		switch i % 4 {
		case 1:
			s.Expires, s.Reason = time.Unix(int64(i)+9, 0), "sshd"
		case 2:
			s.Count, s.Reason = i, string(make([]byte, 100)) // clipped to 67
		}
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32)
		if i%3 == 0 {
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 15: byte(i)}), 128)
		}
		es = append(es, Entry{p, s})
	}
	slices.SortFunc(es, func(a, b Entry) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	b := EncodeChunk(Chunk{Root: "blacklist", Gen: 1, Count: 1, Entries: es})
	if len(b) != cap(b) {
		t.Errorf("payload of %d bytes in a buffer of %d", len(b), cap(b))
	}
	if _, err := DecodeChunk(b); err != nil {
		t.Fatal(err)
	}
}
