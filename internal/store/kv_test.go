package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func openTestKV(t *testing.T, path string, o Options) *KV {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	s, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// contents reads every live key through Scan, as the hook does at startup.
// testLogger shows the store's log with -v.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func contents(t *testing.T, s *KV) map[string]string {
	t.Helper()
	got := map[string]string{}
	if err := s.Scan("", func(k string, v []byte) error {
		got[k] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestKVReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.log")
	s := openTestKV(t, path, Options{})
	want := map[string]string{}
	for i := range 100 {
		k, v := "RET_t/"+strconv.Itoa(i), "v"+strconv.Itoa(i)
		if err := s.Set(k, []byte(v)); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	for i := range 10 { // overwrite some, delete others
		k := "RET_t/" + strconv.Itoa(i)
		if err := s.Set(k, []byte("new")); err != nil {
			t.Fatal(err)
		}
		want[k] = "new"
		k = "RET_t/" + strconv.Itoa(50+i)
		if err := s.Delete(k); err != nil {
			t.Fatal(err)
		}
		delete(want, k)
	}
	if err := s.Set("", nil); err != nil { // empty key and value are values too
		t.Fatal(err)
	}
	want[""] = ""
	if err := s.Delete("never there"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestKV(t, path, Options{})
	defer s.Close()
	if d := cmp.Diff(want, contents(t, s)); d != "" {
		t.Errorf("after reopen (-want +got):\n%s", d)
	}
	v, ok, err := s.Get("RET_t/3")
	if err != nil || !ok || string(v) != "new" {
		t.Errorf("Get(RET_t/3) = %q, %v, %v; want new", v, ok, err)
	}
	if _, ok, _ := s.Get("RET_t/55"); ok {
		t.Error("Get of a deleted key found it")
	}
}

func TestKVScanPrefix(t *testing.T) {
	s := openTestKV(t, filepath.Join(t.TempDir(), "s.log"), Options{})
	defer s.Close()
	for _, k := range []string{"CL_a", "RET_x", "CL_b", "SUB_a:x", "RET_y"} {
		if err := s.Set(k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := s.Scan("RET_", func(k string, _ []byte) error { got = append(got, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"RET_x", "RET_y"}, got); d != "" {
		t.Errorf("Scan(RET_) (-want +got):\n%s", d)
	}
}

func TestKVCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.log")
	s := openTestKV(t, path, Options{SyncEvery: 5 * time.Millisecond, CompactMin: 64 << 10})
	val := bytes.Repeat([]byte("x"), 200)
	want := map[string]string{}
	// Rewrite 100 keys many times: the file grows, the live data does not.
	for round := range 50 {
		for i := range 100 {
			k := "k" + strconv.Itoa(i)
			v := append(val[:len(val):len(val)], strconv.Itoa(round)...)
			if err := s.Set(k, v); err != nil {
				t.Fatal(err)
			}
			want[k] = string(v)
		}
	}
	for i := range 20 {
		k := "k" + strconv.Itoa(i)
		if err := s.Delete(k); err != nil {
			t.Fatal(err)
		}
		delete(want, k)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Stats()
		file, live := st.FileBytes, st.LiveBytes
		if file <= 2*live+int64(len(magic))+64<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no compaction: file %d bytes, live %d", file, live)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 200<<10 { // 50 rounds wrote over 1 MB
		t.Errorf("file is %d bytes after compaction, want about 80 records' worth", st.Size())
	}
	if d := cmp.Diff(want, contents(t, s)); d != "" {
		t.Errorf("after compaction (-want +got):\n%s", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("compaction left %s.tmp behind (stat: %v)", path, err)
	}
	s = openTestKV(t, path, Options{})
	defer s.Close()
	if d := cmp.Diff(want, contents(t, s)); d != "" {
		t.Errorf("reopened after compaction (-want +got):\n%s", d)
	}
}

// TestKVWritesDuringCompaction: writes that land while the compaction
// copies the file are neither lost nor resurrected.
func TestKVWritesDuringCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.log")
	s := openTestKV(t, path, Options{SyncEvery: time.Millisecond, CompactMin: 16 << 10})
	want := map[string]string{}
	val := bytes.Repeat([]byte("y"), 100)
	for i := range 20000 {
		k := "k" + strconv.Itoa(i%500)
		if i%7 == 0 {
			if err := s.Delete(k); err != nil {
				t.Fatal(err)
			}
			delete(want, k)
			continue
		}
		v := string(val) + strconv.Itoa(i)
		if err := s.Set(k, []byte(v)); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	if d := cmp.Diff(want, contents(t, s)); d != "" {
		t.Errorf("live (-want +got):\n%s", d)
	}
	// Compaction runs on the store's own ticker: on a busy machine the
	// writes above can end before it had a turn, so wait for it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := os.Stat(path)
		if err == nil && st.Size() < 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file is %d bytes 10 s after 20,000 writes of 500 keys: never compacted", st.Size())
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestKV(t, path, Options{})
	defer s.Close()
	if d := cmp.Diff(want, contents(t, s)); d != "" {
		t.Errorf("reopened (-want +got):\n%s", d)
	}
}

// TestKVDamagedTail: a record cut short or garbled at the end (a power
// cut, a full disk) is dropped; what came before loads, and new writes
// after the reopen are readable at the next one.
func TestKVDamagedTail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte // b is the file; the last record is "last"
	}{
		{"header cut", func(b []byte) []byte { return b[:len(b)-len("last")-header+3] }},
		{"value cut", func(b []byte) []byte { return b[:len(b)-2] }},
		{"flipped byte", func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }},
		{"garbage appended", func(b []byte) []byte {
			return append(b, encodeRecord(opSet, "k", []byte("v"))[:5]...)
		}},
		{"absurd length", func(b []byte) []byte { return append(b, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.log")
			s := openTestKV(t, path, Options{})
			for _, k := range []string{"a", "b"} {
				if err := s.Set(k, []byte("val-"+k)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Set("z", []byte("last")); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			damaged := tc.damage(b)
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"a": "val-a", "b": "val-b", "z": "last"}
			if tc.name != "garbage appended" && tc.name != "absurd length" {
				delete(want, "z")
			}
			s = openTestKV(t, path, Options{})
			if d := cmp.Diff(want, contents(t, s)); d != "" {
				t.Errorf("after damage (-want +got):\n%s", d)
			}
			// The tail alone is kept aside: the rest is in the new file.
			dmg := s.Stats().Loaded
			tail, err := os.ReadFile(dmg.Aside)
			if err != nil || !dmg.Tail || dmg.Records != 1 || len(tail) == 0 || int64(len(tail)) != dmg.Bytes || !bytes.HasSuffix(damaged, tail) {
				t.Errorf("damage %+v, tail kept aside %q (%v), want the damaged file's last %d bytes", dmg, tail, err, dmg.Bytes)
			}
			if err := s.Set("c", []byte("after")); err != nil {
				t.Fatal(err)
			}
			want["c"] = "after"
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTestKV(t, path, Options{})
			defer s.Close()
			if d := cmp.Diff(want, contents(t, s)); d != "" {
				t.Errorf("write after recovery, reopened (-want +got):\n%s", d)
			}
		})
	}
}

func TestKVRefusesForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.log")
	if err := os.WriteFile(path, []byte("this is somebody else's file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path, Options{Logger: testLogger(t)}); err == nil {
		s.Close()
		t.Fatal("Open accepted a file without the header")
	}
	if b, _ := os.ReadFile(path); string(b) != "this is somebody else's file\n" {
		t.Errorf("Open changed a foreign file: %q", b)
	}
}

func TestKVLeftoverTmpIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.log")
	s := openTestKV(t, path, Options{})
	if err := s.Set("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A compaction cut off by a crash: the copy is partial, the log is whole.
	if err := os.WriteFile(path+".tmp", []byte(magic+"partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTestKV(t, path, Options{})
	defer s.Close()
	if d := cmp.Diff(map[string]string{"a": "1"}, contents(t, s)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("leftover .tmp not removed: %v", err)
	}
}

// TestKVConcurrent: writers, readers and compactions at once (run with
// -race); every writer's last value survives a reopen.
func TestKVConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.log")
	s := openTestKV(t, path, Options{SyncEvery: time.Millisecond, CompactMin: 8 << 10})
	const writers, n = 8, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				k := fmt.Sprintf("w%d/k%d", w, i%50)
				if i%10 == 9 {
					if err := s.Delete(k); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				if err := s.Set(k, []byte(fmt.Sprintf("%d", i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // a reader alongside
		defer wg.Done()
		for range 200 {
			if err := s.Scan("w0/", func(string, []byte) error { return nil }); err != nil {
				t.Error(err)
				return
			}
			if _, _, err := s.Get("w1/k1"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	// Each writer's keys end with the last i that touched them.
	want := map[string]string{}
	for w := range writers {
		for i := range n {
			k := fmt.Sprintf("w%d/k%d", w, i%50)
			if i%10 == 9 {
				delete(want, k)
			} else {
				want[k] = strconv.Itoa(i)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestKV(t, path, Options{})
	defer s.Close()
	if d := cmp.Diff(want, contents(t, s)); d != "" {
		t.Errorf("reopened (-want +got):\n%s", d)
	}
	if err := s.Set("x", nil); err != nil {
		t.Fatal(err)
	}
}

func TestKVClosed(t *testing.T) {
	s := openTestKV(t, filepath.Join(t.TempDir(), "s.log"), Options{})
	if err := s.Set("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Errorf("Sync: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("a", nil); err != ErrClosed {
		t.Errorf("Set after Close: %v, want %v", err, ErrClosed)
	}
	if err := s.Sync(); err != ErrClosed {
		t.Errorf("Sync after Close: %v, want %v", err, ErrClosed)
	}
	if err := s.Close(); err != ErrClosed {
		t.Errorf("second Close: %v, want %v", err, ErrClosed)
	}
}
