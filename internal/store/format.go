package store

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// File layout: the magic line, then records of
//
//	crc32c(4) op(1) keylen(4) vallen(4) key val
//
// little-endian, the checksum covering everything after it. The format is
// the one vallum has written since the store exists: old files load as
// they are.
const (
	magic    = "vallum-kv 1\n"
	header   = 13
	maxKey   = 1 << 20 // topics are at most 64 KiB, client ids much less
	maxValue = 1 << 28 // messages are at most 4 MiB here, JSON-encoded
	opSet    = 1
	opDel    = 2
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func recordLen(key string, n int) int64 { return int64(header + len(key) + n) }

func encodeRecord(o byte, key string, val []byte) []byte {
	b := make([]byte, header+len(key)+len(val))
	b[4] = o
	binary.LittleEndian.PutUint32(b[5:9], uint32(len(key)))
	binary.LittleEndian.PutUint32(b[9:13], uint32(len(val)))
	copy(b[header:], key)
	copy(b[header+len(key):], val)
	binary.LittleEndian.PutUint32(b[0:4], crc32.Checksum(b[4:], crcTable))
	return b
}

// crcOf returns the checksum an encoded record carries.
func crcOf(rec []byte) uint32 { return binary.LittleEndian.Uint32(rec[0:4]) }

// parseHeader returns the lengths in hdr, and "" if they are plausible.
func parseHeader(hdr []byte) (kl, vl uint32, reason string) {
	kl = binary.LittleEndian.Uint32(hdr[5:9])
	vl = binary.LittleEndian.Uint32(hdr[9:13])
	if kl > maxKey || vl > maxValue {
		return 0, 0, fmt.Sprintf("implausible lengths key %d value %d", kl, vl)
	}
	if hdr[4] != opSet && hdr[4] != opDel {
		return 0, 0, fmt.Sprintf("unknown op %d", hdr[4])
	}
	return kl, vl, ""
}

// checkRecord reports whether body (key and value) matches hdr's checksum.
func checkRecord(hdr, body []byte) bool {
	crc := crc32.Update(crc32.Checksum(hdr[4:header], crcTable), crcTable, body)
	return crc == binary.LittleEndian.Uint32(hdr[0:4])
}

// readRecord reads one record. reason is "" for a good record, "end" at a
// clean end of file, and says what is wrong otherwise.
func readRecord(r *bufio.Reader, hdr *[header]byte, body *[]byte) (o byte, key string, n int, crc uint32, reason string) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return 0, "", 0, 0, "end"
		}
		return 0, "", 0, 0, "record header cut short"
	}
	kl, vl, reason := parseHeader(hdr[:])
	if reason != "" {
		return 0, "", 0, 0, reason
	}
	if need := int(kl + vl); cap(*body) < need {
		*body = make([]byte, need)
	}
	b := (*body)[:kl+vl]
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, "", 0, 0, "record cut short"
	}
	if !checkRecord(hdr[:], b) {
		return 0, "", 0, 0, "checksum mismatch"
	}
	return hdr[4], string(b[:kl]), int(vl), binary.LittleEndian.Uint32(hdr[0:4]), ""
}
