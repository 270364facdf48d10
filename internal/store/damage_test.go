package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vallum/vallum/internal/tmpfs"
)

// fill writes n keys and returns what the store holds, and the offset and
// length of the record of key k<mid> in the file.
func fill(t *testing.T, path string, n, mid int) (want map[string]string, off, length int64) {
	t.Helper()
	s := openTestKV(t, path, Options{})
	want = map[string]string{}
	for i := range n {
		k, v := fmt.Sprintf("RET_blacklist/ban/192.0.%d.%d", i/256, i%256), fmt.Sprintf(`{"at":%d}`, i)
		if i == mid {
			st := s.Stats()
			off, length = st.FileBytes, recordLen(k, len(v))
		}
		if err := s.Set(k, []byte(v)); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return want, off, length
}

// TestKVDamagedMiddle: one flipped byte anywhere in a record in the middle
// of the file loses that record only: every other one loads, the damage
// is counted, the damaged file is kept aside byte for byte, and the
// repaired file loads clean.
func TestKVDamagedMiddle(t *testing.T) {
	const n, mid = 5001, 2500
	for _, tc := range []struct {
		name string
		at   func(length int64) int64 // offset of the flipped byte in the record
	}{
		{"checksum", func(int64) int64 { return 1 }},
		{"op", func(int64) int64 { return 4 }},
		{"key length", func(int64) int64 { return 5 }},
		{"key length high byte", func(int64) int64 { return 8 }},
		{"value length", func(int64) int64 { return 9 }},
		{"key", func(int64) int64 { return header + 3 }},
		{"value", func(l int64) int64 { return l - 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "store.log")
			want, off, length := fill(t, path, n, mid)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[off+tc.at(length)] ^= 0x5a
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			delete(want, fmt.Sprintf("RET_blacklist/ban/192.0.%d.%d", mid/256, mid%256))

			s := openTestKV(t, path, Options{})
			if d := cmp.Diff(want, contents(t, s)); d != "" {
				t.Errorf("after a flipped byte (-want +got):\n%s", d)
			}
			dmg := s.Stats().Loaded
			if dmg.Records != 1 || dmg.Tail || dmg.Bytes < 1 || dmg.Bytes > length {
				t.Errorf("damage counted %+v, want 1 record of at most %d bytes, not the tail", dmg, length)
			}
			if aside, err := os.ReadFile(dmg.Aside); err != nil || !bytes.Equal(aside, b) {
				t.Errorf("damaged file kept aside at %q: %v, same bytes %v", dmg.Aside, err, bytes.Equal(aside, b))
			}
			if err := s.Set("after", []byte("repair")); err != nil {
				t.Fatal(err)
			}
			want["after"] = "repair"
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTestKV(t, path, Options{})
			defer s.Close()
			if d := cmp.Diff(want, contents(t, s)); d != "" {
				t.Errorf("reopened after the repair (-want +got):\n%s", d)
			}
			if dmg := s.Stats().Loaded; dmg != (Damage{}) {
				t.Errorf("the repaired file is damaged again: %+v", dmg)
			}
		})
	}
}

// TestKVRepairImpossible: when the repaired copy cannot be written (a
// full disk), the damaged file is used as it is, not cut: writes go after
// the damage, and everything loads at the next start, which repairs.
func TestKVRepairImpossible(t *testing.T) {
	dir := tmpfs.Mount(t, 1<<20)
	path := filepath.Join(dir, "store.log")
	want, off, _ := fill(t, path, 100, 50)
	b, _ := os.ReadFile(path)
	b[off+header+1] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	delete(want, "RET_blacklist/ban/192.0.0.50")
	free := tmpfs.Fill(t, dir)
	s := openTestKV(t, path, Options{FailHold: -1})
	if d := s.Stats().Loaded; d.Records != 1 || d.Aside != "" {
		t.Errorf("damage %+v, want 1 record and no copy aside on a full disk", d)
	}
	big := strings.Repeat("v", 3*4096) // more than the slack in the file's last page
	if err := s.Set("new", []byte(big)); err == nil {
		t.Error("a write to a full disk succeeded")
	}
	if s.Health() == nil {
		t.Error("Health is nil after a failed write")
	}
	free()
	if err := s.Set("new", []byte(big)); err != nil {
		t.Fatal(err)
	}
	if err := s.Health(); err != nil {
		t.Errorf("Health after a write that worked: %v", err)
	}
	want["new"] = big
	s.Close()
	if got, _ := os.ReadFile(path); !bytes.HasPrefix(got, b) {
		t.Error("the damaged file was changed, not only appended to")
	}
	s = openTestKV(t, path, Options{})
	defer s.Close()
	if d := cmp.Diff(want, contents(t, s)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if d := s.Stats().Loaded; d.Records != 1 || d.Aside == "" {
		t.Errorf("second start: damage %+v, want 1 record repaired and kept aside", d)
	}
}

// TestKVSetUnchanged: a Set of the value a key already has writes nothing
// (the broker stores a retained ban before mochi retains it, and again
// when it does).
func TestKVSetUnchanged(t *testing.T) {
	s := openTestKV(t, filepath.Join(t.TempDir(), "s.log"), Options{})
	defer s.Close()
	for _, v := range []string{"v1", "v1", "v2", "v2", "v1"} {
		if err := s.Set("k", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	want := int64(len(magic)) + 3*recordLen("k", 2)
	if got := s.Stats().FileBytes; got != want {
		t.Errorf("file is %d bytes, want %d: three writes of five", got, want)
	}
	if v, _, _ := s.Get("k"); string(v) != "v1" {
		t.Errorf("k = %q, want v1", v)
	}
}

// TestKVHealthHolds: on a full disk a small write can fit where a large one
// does not; Health keeps reporting the failure for FailHold after writes
// work again, so that /healthz does not flap, then clears.
func TestKVHealthHolds(t *testing.T) {
	dir := tmpfs.Mount(t, 1<<20)
	s := openTestKV(t, filepath.Join(dir, "store.log"), Options{FailHold: 200 * time.Millisecond})
	defer s.Close()
	free := tmpfs.Fill(t, dir)
	if err := s.Set("big", bytes.Repeat([]byte("v"), 3*4096)); err == nil {
		t.Fatal("a write to a full disk succeeded")
	}
	free()
	if err := s.Set("small", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if s.Health() == nil {
		t.Error("Health nil right after a failed write")
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Health still %v long after FailHold", s.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.WriteErrors != 1 {
		t.Errorf("WriteErrors %d, want 1", st.WriteErrors)
	}
}
