package datadir

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets a test run this binary as a second process that holds a
// lock until its standard input closes.
func TestMain(m *testing.M) {
	if path := os.Getenv("DATADIR_TEST_HOLD"); path != "" {
		l, err := Acquire(path, "the test lock")
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		_ = l.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holder runs a second process that holds the lock at path, and returns
// its pid and a function that ends it.
func holder(t *testing.T, path string) (int, func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DATADIR_TEST_HOLD="+path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() { _ = in.Close(); _ = cmd.Wait() }
	t.Cleanup(stop)
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("second process: %q", line)
	}
	return cmd.Process.Pid, stop
}

// TestLockHeldByAnotherProcess: while a second process holds the lock, an
// Acquire fails at once and names it; once it exits, Acquire succeeds.
func TestLockHeldByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "lock")
	pid, stop := holder(t, path)
	l, err := Acquire(path, "the broker store in X")
	var le *LockedError
	if !errors.As(err, &le) || le.PID != pid {
		l.Close()
		t.Fatalf("Acquire while pid %d holds it: %v, want a LockedError naming that pid", pid, err)
	}
	for _, want := range []string{"the broker store in X", "pid", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	stop()
	l, err = Acquire(path, "x")
	if err != nil {
		t.Fatalf("Acquire after the holder exited: %v", err)
	}
	defer l.Close()
}

// TestLockInOneProcess: two Acquires of one path in one process conflict,
// as two brokers in one test must; Close releases.
func TestLockInOneProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	a, err := Acquire(path, "x")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := Acquire(path, "x"); err == nil {
		b.Close()
		t.Fatal("second Acquire in one process succeeded")
	} else if le := new(LockedError); !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Fatalf("second Acquire: %v, want a LockedError naming pid %d", err, os.Getpid())
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := Acquire(path, "x")
	if err != nil {
		t.Fatalf("Acquire after Close: %v", err)
	}
	b.Close()
}

func TestMigrateStore(t *testing.T) {
	d := Dir(t.TempDir())
	if note, err := d.MigrateStore(); note != "" || err != nil {
		t.Errorf("nothing to migrate: %q, %v", note, err)
	}
	write := func(path, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(d.oldStore(), "old bans")
	if note, err := d.MigrateStore(); err != nil || !strings.Contains(note, "moved") {
		t.Fatalf("migrate: %q, %v", note, err)
	}
	if b, err := os.ReadFile(d.Store()); string(b) != "old bans" {
		t.Errorf("store after migration: %q, %v", b, err)
	}
	if _, err := os.Stat(d.oldStore()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old store still there: %v", err)
	}
	// Both: the new one is kept as it is, the old one is not touched.
	write(d.oldStore(), "older")
	if note, err := d.MigrateStore(); err != nil || !strings.Contains(note, "both") {
		t.Fatalf("migrate with both: %q, %v", note, err)
	}
	for path, want := range map[string]string{d.Store(): "old bans", d.oldStore(): "older"} {
		if b, _ := os.ReadFile(path); string(b) != want {
			t.Errorf("%s: %q, want %q", path, b, want)
		}
	}
}

// TestWriteAtomic: the file is made with its folder and mode, replaced
// whole, and no temporary file is left beside it.
func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bridge", "epochs")
	for _, content := range []string{"first\n", "second, longer\n"} {
		if err := WriteAtomic(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v (%v), want 0640", st.Mode().Perm(), err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("folder holds %d files, want the file alone", len(ents))
	}
}
