package store

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// seeds are a good log body (records after the magic line) and damaged ones.
func seeds(f *testing.F) {
	var good []byte
	for i, kv := range [][2]string{{"RET_a/ban/1", `{"at":1}`}, {"CL_host1", `{"id":"host1"}`}, {"RET_a/ban/2", ""}} {
		good = append(good, encodeRecord(opSet, kv[0], []byte(kv[1]))...)
		if i == 1 {
			good = append(good, encodeRecord(opDel, "RET_a/ban/1", nil)...)
		}
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	flipped := bytes.Clone(good)
	flipped[20] ^= 1
	f.Add(flipped)
	f.Add(append(bytes.Clone(good[:30]), good...))
	f.Add([]byte{})
}

// FuzzReadLog feeds the reader any log body. The good records and the
// skipped stretches it reports must tile the file, each good record must
// be exactly its encoding, and a log written from the good records must
// read back the same, with nothing skipped. This is the target CI fuzzes
// (.ci/run): it reads from memory, thousands of inputs a second.
func FuzzReadLog(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, _ := readAll(t, append([]byte(magic), body...))
		clean := bytes.Join(append([][]byte{[]byte(magic)}, recs...), nil)
		again, skipped := readAll(t, clean)
		if skipped > 0 || len(again) != len(recs) {
			t.Fatalf("the good records, written again, read as %d records and %d skipped, want %d and 0",
				len(again), skipped, len(recs))
		}
	})
}

// readAll reads file with readLog, checks that records and skipped
// stretches tile it, and returns the records, as they are in the file,
// and the number of skipped stretches.
func readAll(t *testing.T, file []byte) (recs [][]byte, skipped int) {
	t.Helper()
	next := int64(len(magic))
	readLog(bytes.NewReader(file), int64(len(file)),
		func(o byte, key string, off int64, n int, crc uint32) {
			end := off + recordLen(key, n)
			if off != next || end > int64(len(file)) {
				t.Fatalf("record at %d-%d, want it at %d, in a file of %d", off, end, next, len(file))
			}
			enc := file[off:end]
			if want := encodeRecord(o, key, enc[end-off-int64(n):]); !bytes.Equal(enc, want) || crcOf(enc) != crc {
				t.Fatalf("record at %d is not its encoding", off)
			}
			recs = append(recs, enc)
			next = end
		},
		func(from, to int64, more bool, reason string) {
			if from != next || to <= from || to > int64(len(file)) || !more && to != int64(len(file)) {
				t.Fatalf("skipped %d-%d (more %v, %s), want from %d, in a file of %d", from, to, more, reason, next, len(file))
			}
			next = to
			skipped++
		})
	if next != int64(len(file)) {
		t.Fatalf("read up to %d of %d bytes", next, len(file))
	}
	return recs, skipped
}

// FuzzOpen feeds Open any file that starts with the store's header: a
// slower target (files, a folder per input) for runs by hand. Open must
// not fail; what it kept aside must be what it dropped; the repaired file
// must load clean with the same contents.
func FuzzOpen(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "store.log")
		file := append([]byte(magic), body...)
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path, Options{noSync: true})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		first := contents(t, s)
		dmg := s.Stats().Loaded
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if dmg.Records > 0 {
			aside, err := os.ReadFile(dmg.Aside)
			switch {
			case err != nil:
				t.Fatalf("damage %+v, nothing kept aside: %v", dmg, err)
			case dmg.Tail && dmg.Records == 1 && !bytes.HasSuffix(file, aside):
				t.Fatalf("tail kept aside %q is not the file's end", aside)
			case !(dmg.Tail && dmg.Records == 1) && !bytes.Equal(file, aside):
				t.Fatal("the damaged file kept aside is not the original")
			}
		}
		s, err = Open(path, Options{noSync: true})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer s.Close()
		if d := cmp.Diff(first, contents(t, s)); d != "" {
			t.Fatalf("reopened (-first +second):\n%s", d)
		}
		if d := s.Stats().Loaded; d != (Damage{}) {
			t.Fatalf("the repaired file is damaged: %+v", d)
		}
	})
}
