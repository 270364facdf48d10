package wire

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
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
}

type manifestJSON struct {
	V       int      `json:"v"`
	Epoch   string   `json:"epoch"`
	Gen     string   `json:"gen"`
	Cut     int64    `json:"cut"` // Unix milliseconds
	Chunks  int      `json:"chunks"`
	Entries int      `json:"entries"`
	CRC     []string `json:"crc"`
}

// EncodeManifest returns the retained payload for m.
func EncodeManifest(m Manifest) []byte {
	crc := make([]string, len(m.CRC))
	for i, c := range m.CRC {
		crc[i] = fmt.Sprintf("%08x", c)
	}
	b, _ := json.Marshal(manifestJSON{V: ManifestVersion, Epoch: m.Epoch, Gen: GenString(m.Gen),
		Cut: m.Cut.UnixMilli(), Chunks: len(m.CRC), Entries: m.Entries, CRC: crc})
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
