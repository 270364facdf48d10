package wire

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
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
		}
	})
}
