package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// vallumFor runs the CLI with args for at most d and returns its error (nil
// when it ran until stopped).
func vallumFor(t *testing.T, d time.Duration, args ...string) error {
	t.Helper()
	t.Setenv("VALLUM_CONFIG", "")
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := root.ExecuteContext(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// A port in use (another broker there) says what to do: the daemon can use
// that broker with -h; `vallum broker` must move or stop it.
func TestPortInUseSaysWhatToDo(t *testing.T) {
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	err = vallumFor(t, 5*time.Second, "-t", "blacklist", "--backend", "dryrun", "--listen", addr, "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "-h 127.0.0.1") {
		t.Errorf("daemon on a port in use: %v, want the cause and a hint naming -h 127.0.0.1", err)
	}
	err = vallumFor(t, 5*time.Second, "broker", "--listen", addr, "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "--listen a free port") {
		t.Errorf("broker on a port in use: %v, want the cause and a hint naming --listen", err)
	}
}
