package wire

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ManifestPrefix is where a list's keeper names the chunks of its list:
// one retained manifest per list on ManifestPrefix + ROOT. It is a level
// of its own, not under ChunkPrefix, so that no list's chunk filter can
// match another list's manifest. Under Namespace: only the keeper writes.
const ManifestPrefix = Namespace + "/manifest/"

// ManifestTopic is the manifest topic of the list ROOT.
func ManifestTopic(root string) string { return ManifestPrefix + root }

// ManifestVersion is the only manifest version this release reads.
const ManifestVersion = 1

// MaxChunks bounds a manifest: 4,096 chunks of MaxChunkEntries are
// 16,777,216 bans, the most a kernel set of vallum's can hold anyway.
const MaxChunks = 4096

// maxManifestPayload bounds a manifest payload: MaxChunks checksums of
// 11 bytes each plus the header.
const maxManifestPayload = 64 << 10

// Manifest names the chunks of one generation of a list: a reader takes
// the chunks of Gen whose checksums match CRC, then every per-ban state
// newer than Cut, last writer wins.
type Manifest struct {
	Epoch   string    // the keeper record's epoch; another epoch's manifest is ignored
	Gen     uint64    // the generation, as in the chunks' headers and topics
	Cut     time.Time // when the chunks were cut, to the millisecond
	Entries int       // bans in all the chunks
	CRC     []uint32  // CRC-32C of each chunk's payload, in chunk order
	// Deltas announces the per-ban states made since the cut, so that a
	// reader can tell one its broker did not serve from a lifted ban;
	// nil from a keeper of an earlier release.
	Deltas *Deltas
}

// Deltas are the per-ban states (ROOT/ban/PREFIX) a list's broker holds
// with Cut < at <= Upto, as the keeper knows them: how many and the XOR
// of their DeltaHash. A reader that read a different set read the list
// partially (a clustered broker's node may lag or lose a retained
// message), unless a state changed since: the keeper announces again
// within a second. States made after Upto are not announced (a cut
// leaves none, and the keeper names them once they are a moment old).
type Deltas struct {
	Upto time.Time // to the millisecond
	DeltaSum
}

// DeltaSum is an order-independent digest of a set of per-ban states.
type DeltaSum struct {
	Count int
	Sum   uint64 // XOR of DeltaHash
}

// Add counts the state of p at version at (Unix milliseconds).
func (d *DeltaSum) Add(p netip.Prefix, at int64) {
	d.Count++
	d.Sum ^= DeltaHash(p, at)
}

// Covers reports whether a state at version at is one m.Deltas counts.
func (m Manifest) Covers(at int64) bool {
	return m.Deltas != nil && at > m.Cut.UnixMilli() && at <= m.Deltas.Upto.UnixMilli()
}

// DeltaHash is FNV-1a (64 bits) of the prefix's address (4 or 16 bytes,
// network order, IPv4 as IPv4), its length (1 byte) and at (8 bytes,
// big-endian Unix milliseconds).
func DeltaHash(p netip.Prefix, at int64) uint64 {
	var b [25]byte
	a := p.Addr().Unmap().AsSlice()
	n := copy(b[:], a)
	b[n] = byte(p.Bits())
	binary.BigEndian.PutUint64(b[n+1:], uint64(at))
	h := fnv.New64a()
	h.Write(b[:n+9])
	return h.Sum64()
}

type manifestJSON struct {
	V       int         `json:"v"`
	Epoch   string      `json:"epoch"`
	Gen     string      `json:"gen"`
	Cut     int64       `json:"cut"` // Unix milliseconds
	Chunks  int         `json:"chunks"`
	Entries int         `json:"entries"`
	CRC     []string    `json:"crc"`
	Deltas  *deltasJSON `json:"deltas,omitempty"`
}

type deltasJSON struct {
	Upto  int64  `json:"upto"` // Unix milliseconds
	Count int    `json:"n"`
	Sum   string `json:"xor"` // 16 hex digits
}

// EncodeManifest returns the retained payload for m.
func EncodeManifest(m Manifest) []byte {
	crc := make([]string, len(m.CRC))
	for i, c := range m.CRC {
		crc[i] = fmt.Sprintf("%08x", c)
	}
	j := manifestJSON{V: ManifestVersion, Epoch: m.Epoch, Gen: GenString(m.Gen),
		Cut: m.Cut.UnixMilli(), Chunks: len(m.CRC), Entries: m.Entries, CRC: crc}
	if d := m.Deltas; d != nil {
		j.Deltas = &deltasJSON{Upto: d.Upto.UnixMilli(), Count: d.Count, Sum: fmt.Sprintf("%016x", d.Sum)}
	}
	b, _ := json.Marshal(j)
	return b
}

// DecodeManifest parses a manifest payload. An empty payload is no
// manifest (a deleted one); the caller handles it first.
func DecodeManifest(b []byte) (Manifest, error) {
	if len(b) > maxManifestPayload || !utf8.Valid(b) {
		return Manifest{}, fmt.Errorf("%w: manifest of %d bytes, not UTF-8 or over %d", ErrBadPayload, len(b), maxManifestPayload)
	}
	var j manifestJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %v", ErrBadPayload, err)
	}
	if j.V != ManifestVersion {
		return Manifest{}, fmt.Errorf("%w: manifest version %d, this release reads %d", ErrBadPayload, j.V, ManifestVersion)
	}
	gen, err := strconv.ParseUint(j.Gen, 16, 64)
	switch {
	case !ValidEpoch(j.Epoch):
		return Manifest{}, fmt.Errorf("%w: manifest without a valid \"epoch\"", ErrBadPayload)
	case err != nil || len(j.Gen) != 16:
		return Manifest{}, fmt.Errorf("%w: manifest \"gen\" %q is not 16 hex digits", ErrBadPayload, j.Gen)
	case j.Cut <= 0 || j.Entries < 0 || j.Chunks > MaxChunks || j.Chunks != len(j.CRC):
		return Manifest{}, fmt.Errorf("%w: manifest with a bad \"cut\", \"entries\", or %d chunks for %d checksums", ErrBadPayload, j.Chunks, len(j.CRC))
	case j.Entries > j.Chunks*MaxChunkEntries:
		return Manifest{}, fmt.Errorf("%w: manifest says %d entries in %d chunks", ErrBadPayload, j.Entries, j.Chunks)
	}
	m := Manifest{Epoch: j.Epoch, Gen: gen, Cut: time.UnixMilli(j.Cut), Entries: j.Entries, CRC: make([]uint32, len(j.CRC))}
	for i, s := range j.CRC {
		c, err := strconv.ParseUint(s, 16, 32)
		if err != nil || len(s) != 8 {
			return Manifest{}, fmt.Errorf("%w: manifest checksum %d %q is not 8 hex digits", ErrBadPayload, i, s)
		}
		m.CRC[i] = uint32(c)
	}
	if d := j.Deltas; d != nil {
		sum, err := strconv.ParseUint(d.Sum, 16, 64)
		if err != nil || len(d.Sum) != 16 || d.Count < 0 || d.Upto <= 0 {
			return Manifest{}, fmt.Errorf("%w: manifest \"deltas\" with a bad \"upto\", \"n\" or \"xor\"", ErrBadPayload)
		}
		m.Deltas = &Deltas{Upto: time.UnixMilli(d.Upto), DeltaSum: DeltaSum{Count: d.Count, Sum: sum}}
	}
	return m, nil
}

// ChunkCRC returns the checksum a chunk payload carries in its trailer,
// the value its manifest lists; 0 for a payload too short to have one.
// It does not verify the payload: DecodeChunk does.
func ChunkCRC(payload []byte) uint32 {
	if len(payload) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(payload[len(payload)-4:])
}

// epochV2 marks the epoch of a list kept as chunks without per-ban state
// for every ban. The previous release's hosts refuse it as a record (its
// ValidEpoch wants 16 hex digits), so they keep their bans and say so at
// ERROR instead of taking the deltas alone for the whole list.
const epochV2 = "v2:"

// EpochV2 returns the v2 spelling of a 16-hex-digit epoch.
func EpochV2(epoch string) string { return epochV2 + strings.TrimPrefix(epoch, epochV2) }

// IsEpochV2 reports whether epoch is in the v2 spelling: the list's per-ban
// state holds only the changes since its chunks were cut.
func IsEpochV2(epoch string) bool { return strings.HasPrefix(epoch, epochV2) }
