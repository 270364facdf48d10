package store

import (
	"bufio"
	"io"
)

// readLog reads the records of a log of size bytes from r, after the
// magic line. It calls rec for each good record, in file order, and skip
// for each damaged stretch: a record that fails its checksum or its
// lengths, up to the next good record (more), or up to the end (a damaged
// tail). Every byte after the magic line is in exactly one record or one
// skipped stretch.
func readLog(r io.ReaderAt, size int64,
	rec func(o byte, key string, off int64, n int, crc uint32),
	skip func(from, to int64, more bool, reason string)) {
	off := int64(len(magic))
	for off < size {
		var reason string
		if off, reason = readFrom(r, off, size, rec); reason == "" {
			return
		}
		next, ok := resync(r, off+1, size)
		if !ok {
			next = size
		}
		skip(off, next, ok, reason)
		off = next
	}
}

// readFrom reads good records from off on. It returns where it stopped,
// and why: "" at the end of the file.
func readFrom(r io.ReaderAt, off, size int64, rec func(o byte, key string, off int64, n int, crc uint32)) (int64, string) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, off, size-off), 256<<10)
	var hdr [header]byte
	var body []byte
	for {
		o, key, n, crc, reason := readRecord(br, &hdr, &body)
		if reason == "end" {
			return off, ""
		}
		if reason != "" {
			return off, reason
		}
		rec(o, key, off, n, crc)
		off += recordLen(key, n)
	}
}

// resync finds the first good record at or after from. Nothing a client
// sends can pass for a record here: a record's lengths hold zero bytes,
// and keys are topics and client ids, values JSON, none with a raw NUL.
func resync(r io.ReaderAt, from, size int64) (int64, bool) {
	const window = 64 << 10
	buf := make([]byte, window+header)
	for p := from; p+header <= size; p += window {
		n, _ := r.ReadAt(buf[:min(int64(len(buf)), size-p)], p)
		for i := 0; i+header <= n && i < window; i++ {
			if goodAt(r, p+int64(i), buf[i:i+header], size) {
				return p + int64(i), true
			}
		}
	}
	return 0, false
}

// goodAt reports whether a whole record with a good checksum starts at at.
func goodAt(r io.ReaderAt, at int64, hdr []byte, size int64) bool {
	kl, vl, reason := parseHeader(hdr)
	if reason != "" || at+header+int64(kl)+int64(vl) > size {
		return false
	}
	body := make([]byte, kl+vl)
	if _, err := r.ReadAt(body, at+header); err != nil {
		return false
	}
	return checkRecord(hdr, body)
}
