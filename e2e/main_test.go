//go:build e2e

// Package e2e runs vallum end to end: hosts in network namespaces, real
// brokers, real kernel sets, real fail2ban and real packets. Run as root:
// go test -tags e2e ./e2e/
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/vallum/vallum/internal/lab"
)

// vallumBin is the binary under test, built once for the whole package.
var vallumBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipped, needs root")
		os.Exit(m.Run()) // every test skips through newLab
	}
	dir, err := os.MkdirTemp("", "vallum-e2e-bin")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	vallumBin, err = lab.BuildVallum(dir)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newLab returns a lab removed when the test ends, and a folder for logs.
func newLab(t *testing.T) (*lab.Lab, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir() // first, so that it is removed after the lab's processes end
	l, err := lab.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l, dir
}

func addHost(t *testing.T, l *lab.Lab, name string) *lab.Host {
	t.Helper()
	h, err := l.AddHost(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
