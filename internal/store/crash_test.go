package store

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets TestKVSIGKILL run this binary as a writer it kills.
func TestMain(m *testing.M) {
	if path := os.Getenv("STORE_TEST_WRITER"); path != "" {
		writer(path)
		return
	}
	os.Exit(m.Run())
}

// writer sets keys w<start>, w<start+1>... with values of 10 bytes to 20
// KiB (so that a write spans pages and a kill can cut one short), and
// prints each key once Set returned, until it is killed.
func writer(path string) {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	start := s.Len()
	for i := start; ; i++ {
		if err := s.Set("w"+strconv.Itoa(i), writerValue(i)); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stdout, "%d\n", i) // unbuffered: printed means acknowledged
	}
}

func writerValue(i int) []byte {
	return []byte(strings.Repeat(strconv.Itoa(i%10), 10+(i*7919)%(20<<10)))
}

// TestKVSIGKILL: a process killed while it writes loses nothing that
// Set acknowledged (the documented window, fsync aside: a process crash
// loses nothing, only a power cut loses up to SyncEvery). Five rounds on
// one file, each killed after a different number of writes.
func TestKVSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.log")
	acked := -1
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "STORE_TEST_WRITER="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewScanner(out)
		killAfter, n := 100+round*397, 0
		deadline := time.Now().Add(30 * time.Second)
		for r.Scan() {
			line := r.Text()
			i, err := strconv.Atoi(line)
			if err != nil {
				t.Fatalf("round %d: writer said %q", round, line)
			}
			acked = max(acked, i)
			if n++; n == killAfter || time.Now().After(deadline) {
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		_ = cmd.Wait()
		if n < killAfter {
			t.Fatalf("round %d: writer stopped after %d writes: %v", round, n, r.Err())
		}

		s := openTestKV(t, path, Options{})
		for i := 0; i <= acked; i++ {
			v, ok, err := s.Get("w" + strconv.Itoa(i))
			if err != nil || !ok || string(v) != string(writerValue(i)) {
				t.Fatalf("round %d: acknowledged w%d lost after SIGKILL (ok %v, err %v)", round, i, ok, err)
			}
		}
		if l := s.Len(); l > acked+2 {
			t.Errorf("round %d: %d keys, want at most the %d acknowledged and the one in flight", round, l, acked+1)
		}
		acked = s.Len() - 1 // the one in flight, if it made it, counts from now on
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
