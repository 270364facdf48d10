package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a new pseudo-terminal: the master, as the user's
// terminal emulator holds it, and the slave, vallum's standard input.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skip("no pseudo-terminals here:", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// readUntil reads the terminal until it has shown want, or fails.
func readUntil(t *testing.T, m *os.File, seen *bytes.Buffer, want string) {
	t.Helper()
	m.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	for !strings.Contains(seen.String(), want) {
		n, err := m.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("terminal shows %q, waiting for %q: %v", seen.String(), want, err)
		}
	}
}

// On a terminal, add-user asks for the password twice without echoing it,
// and the user then logs in with it; two different answers are refused.
func TestAddUserPrompt(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.yaml")
	run := func(first, second string) (string, error) {
		m, s := openPTY(t)
		root := newRootCmd()
		root.SetIn(s)
		root.SetOut(s)
		root.SetErr(s)
		root.SetArgs([]string{"broker", "add-user", "edge1", "--users", users})
		t.Setenv("VALLUM_CONFIG", "")
		done := make(chan error, 1)
		go func() { done <- root.Execute() }()
		var seen bytes.Buffer
		readUntil(t, m, &seen, "password for edge1: ")
		m.WriteString(first + "\n")
		readUntil(t, m, &seen, "again: ")
		m.WriteString(second + "\n")
		err := <-done
		m.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		rest := make([]byte, 4096)
		n, _ := m.Read(rest)
		seen.Write(rest[:n])
		return seen.String(), err
	}
	shown, err := run("tty-pw-5a1", "tty-pw-5a1")
	if err != nil {
		t.Fatalf("add-user at a terminal: %v\n%s", err, shown)
	}
	if strings.Contains(shown, "tty-pw-5a1") {
		t.Errorf("the terminal echoed the password:\n%q", shown)
	}
	if !logIn(t, users, "edge1", "tty-pw-5a1") {
		t.Error("edge1 cannot log in with the password typed at the prompt")
	}
	shown, err = run("one-pw", "other-pw")
	if err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("two different passwords: %v, want refused\n%s", err, shown)
	}
	if !logIn(t, users, "edge1", "tty-pw-5a1") {
		t.Error("a refused change altered the password")
	}
}
