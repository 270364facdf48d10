package wire

// The compact list (docs/compact-list.md): a keeper publishes a list as a
// few hundred retained chunks, each of at most MaxChunkEntries bans, and a
// manifest naming them (manifest.go), so that a late joiner reads hundreds
// of messages instead of one per ban.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ChunkPrefix is where keepers publish chunks: under Namespace, so only
// the keeper (admins) may write them, like the record.
const ChunkPrefix = Namespace + "/list/"

// ChunkTopic is the topic of chunk n of generation gen of list root.
func ChunkTopic(root string, gen uint64, n int) string {
	return ChunkPrefix + root + "/" + GenString(gen) + "/" + strconv.Itoa(n)
}

// ChunkFilter subscribes to every chunk of one generation of root.
func ChunkFilter(root string, gen uint64) string {
	return ChunkPrefix + root + "/" + GenString(gen) + "/+"
}

// ChunksFilter subscribes to every chunk of every generation of root. A
// chunk topic has exactly two levels after ROOT, so it never matches the
// chunks of another list, even one whose root begins with this one's.
func ChunksFilter(root string) string { return ChunkPrefix + root + "/+/+" }

// ParseChunkTopic returns the generation and index a chunk topic of root
// names; ok is false for any other topic.
func ParseChunkTopic(root, topic string) (gen uint64, n int, ok bool) {
	rest, found := strings.CutPrefix(topic, ChunkPrefix+root+"/")
	g, idx, two := strings.Cut(rest, "/")
	if !found || !two || len(g) != 16 || strings.Contains(idx, "/") {
		return 0, 0, false
	}
	gen, err := strconv.ParseUint(g, 16, 64)
	n, err2 := strconv.Atoi(idx)
	if err != nil || err2 != nil || n < 0 || strconv.Itoa(n) != idx {
		return 0, 0, false
	}
	return gen, n, true
}

// GenString spells a generation in topics: 16 hex digits.
func GenString(gen uint64) string { return fmt.Sprintf("%016x", gen) }

// Entry is one ban in a chunk: what State says, for one prefix.
type Entry struct {
	Prefix netip.Prefix
	State  State
}

// Chunk is one retained message of a compact list.
type Chunk struct {
	Root    string
	Gen     uint64 // the compaction: Unix milliseconds when it was cut
	Index   int    // 0 .. Count-1
	Count   int    // chunks in this generation
	Entries []Entry
}

const (
	// chunkMagic and chunkMagicCount: a chunk in which an entry carries
	// the escalation count (flagCount) says VLC2, so that a reader of VLC1
	// chunks, which knows no count, refuses it whole instead of misreading
	// its entries; a chunk without counts stays VLC1, as it was.
	chunkMagic      = "VLC1"
	chunkMagicCount = "VLC2"
	flagV6          = 1 << 0
	flagExp         = 1 << 1
	flagReason      = 1 << 2
	flagOrigin      = 1 << 3
	flagCount       = 1 << 4 // VLC2 only
	flagsV1         = flagV6 | flagExp | flagReason | flagOrigin
	// MaxChunkPayload stays under NATS's default max_payload (1 MB).
	MaxChunkPayload = 1 << 20
	// MaxChunkEntries bounds a chunk: 4,096 IPv6 entries with full
	// reason and origin are about 680 KB, under MaxChunkPayload.
	MaxChunkEntries = 4096
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadChunk is a chunk that does not parse or whose checksum is wrong.
var ErrBadChunk = errors.New("bad chunk")

// EncodeChunk returns the payload of c (format: docs/compact-list.md).
func EncodeChunk(c Chunk) []byte {
	// Sized exactly: a keeper holds its chunks (a million bans: 245 of
	// about 94 KB), and a buffer grown by append would hold up to twice.
	size, magic := 24+1+len(c.Root)+4, chunkMagic
	for _, e := range c.Entries {
		size += entrySize(e)
		if e.State.Count > 0 {
			magic = chunkMagicCount
		}
	}
	b := make([]byte, 0, size)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint64(b, c.Gen)
	b = binary.BigEndian.AppendUint32(b, uint32(c.Index))
	b = binary.BigEndian.AppendUint32(b, uint32(c.Count))
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Entries)))
	b = append(b, byte(len(c.Root)))
	b = append(b, c.Root...)
	for _, e := range c.Entries {
		b = appendEntry(b, e)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// entrySize is the size of e in a chunk, as appendEntry writes it.
func entrySize(e Entry) int {
	n := 2 + 4 + 8
	if e.Prefix.Addr().Is6() {
		n += 12
	}
	if !e.State.Expires.IsZero() {
		n += 4
	}
	for _, s := range []string{e.State.Reason, e.State.Origin} {
		if s != "" {
			n += 1 + len(Clip(s))
		}
	}
	if e.State.Count > 0 {
		n += 4
	}
	return n
}

func appendEntry(b []byte, e Entry) []byte {
	var f byte
	a := e.Prefix.Addr()
	if a.Is6() {
		f |= flagV6
	}
	if !e.State.Expires.IsZero() {
		f |= flagExp
	}
	if e.State.Reason != "" {
		f |= flagReason
	}
	if e.State.Origin != "" {
		f |= flagOrigin
	}
	if e.State.Count > 0 {
		f |= flagCount
	}
	b = append(b, f, byte(e.Prefix.Bits()))
	b = append(b, a.AsSlice()...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.State.At.UnixMilli()))
	if f&flagExp != 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(e.State.Expires.Unix()))
	}
	for _, s := range []struct {
		flag byte
		v    string
	}{{flagReason, e.State.Reason}, {flagOrigin, e.State.Origin}} {
		if f&s.flag != 0 {
			v := Clip(s.v)
			b = append(b, byte(len(v)))
			b = append(b, v...)
		}
	}
	if f&flagCount != 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(min(e.State.Count, math.MaxInt32)))
	}
	return b
}

// DecodeChunk parses a chunk payload and checks its checksum.
func DecodeChunk(b []byte) (Chunk, error) { return DecodeChunkInto(b, nil) }

// DecodeChunkInto is DecodeChunk with the entries appended to buf[:0]: a
// reader of many chunks (a late join of a million bans is 245 of them)
// decodes each into the same buffer instead of allocating one per chunk.
func DecodeChunkInto(b []byte, buf []Entry) (Chunk, error) {
	if len(b) > MaxChunkPayload || len(b) < 29 || string(b[:4]) != chunkMagic && string(b[:4]) != chunkMagicCount {
		return Chunk{}, fmt.Errorf("%w: %d bytes, no %s or %s header", ErrBadChunk, len(b), chunkMagic, chunkMagicCount)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return Chunk{}, fmt.Errorf("%w: checksum", ErrBadChunk)
	}
	c := Chunk{Gen: binary.BigEndian.Uint64(body[4:]), Index: int(binary.BigEndian.Uint32(body[12:])),
		Count: int(binary.BigEndian.Uint32(body[16:]))}
	n := int(binary.BigEndian.Uint32(body[20:]))
	if n > MaxChunkEntries {
		return Chunk{}, fmt.Errorf("%w: %d entries, over %d", ErrBadChunk, n, MaxChunkEntries)
	}
	r := reader{b: body[24:], flags: flagsV1}
	if string(b[:4]) == chunkMagicCount {
		r.flags |= flagCount
	}
	c.Root = string(r.bytes(int(r.byte())))
	if n > len(r.b)/14 { // an entry is at least 14 bytes
		return Chunk{}, fmt.Errorf("%w: %d entries in %d bytes", ErrBadChunk, n, len(r.b))
	}
	c.Entries = slices.Grow(buf[:0], n)
	for range n {
		e, err := r.entry()
		if err != nil {
			return Chunk{}, err
		}
		c.Entries = append(c.Entries, e)
	}
	if r.err || len(r.b) != 0 || c.Index >= c.Count {
		return Chunk{}, fmt.Errorf("%w: truncated, trailing bytes or index %d of %d", ErrBadChunk, c.Index, c.Count)
	}
	return c, nil
}

// reader walks a chunk; a read past the end sets err and returns zeros.
// It hands out the reason and origin it read last again when the next
// entry has the same: the entries of a chunk mostly share them, and a
// string each was two allocations per ban.
type reader struct {
	b              []byte
	err            bool
	flags          byte // the entry flags the chunk's version knows
	reason, origin string
}

// text reads a length-prefixed string, clipped, reusing *last when equal.
func (r *reader) text(last *string) string {
	b := r.bytes(int(r.byte()))
	if string(b) != *last { // compared without a copy; Clip(*last) == *last
		*last = Clip(string(b))
	}
	return *last
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.err, r.b = true, nil
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte { return r.bytes(1)[0] }

func (r *reader) entry() (Entry, error) {
	f, bits := r.byte(), int(r.byte())
	if f&^r.flags != 0 {
		return Entry{}, fmt.Errorf("%w: entry flags %#x", ErrBadChunk, f)
	}
	size := 4
	if f&flagV6 != 0 {
		size = 16
	}
	a, _ := netip.AddrFromSlice(r.bytes(size))
	p, err := a.Prefix(bits)
	// One spelling per ban: no host bits, no v4-mapped IPv6.
	if r.err || err != nil || p.Bits() != bits || p.Addr() != a || a.Is4In6() {
		return Entry{}, fmt.Errorf("%w: bad or non-canonical prefix", ErrBadChunk)
	}
	e := Entry{Prefix: p}
	e.State.At = time.UnixMilli(int64(binary.BigEndian.Uint64(r.bytes(8))))
	if f&flagExp != 0 {
		e.State.Expires = time.Unix(int64(binary.BigEndian.Uint32(r.bytes(4))), 0)
	}
	if f&flagReason != 0 {
		e.State.Reason = r.text(&r.reason)
	}
	if f&flagOrigin != 0 {
		e.State.Origin = r.text(&r.origin)
	}
	if f&flagCount != 0 {
		n := binary.BigEndian.Uint32(r.bytes(4))
		if n == 0 || n > math.MaxInt32 {
			return Entry{}, fmt.Errorf("%w: count %d", ErrBadChunk, n)
		}
		e.State.Count = int(n)
	}
	return e, nil
}
