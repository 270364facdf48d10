//go:build !(vallum_small && (mips || mipsle))

package main

import (
	"strings"
	"testing"
)

// output is what doctor reads the rules with: stdout of a program in PATH.
func TestOutput(t *testing.T) {
	out, err := output("sh", "-c", "echo rules; echo noise >&2")
	if err != nil || string(out) != "rules\n" {
		t.Errorf("output(sh) = %q, %v; want \"rules\\n\", nil", out, err)
	}
	if _, err := output("sh", "-c", "exit 3"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("failing program: err = %v, want its exit status", err)
	}
	if _, err := output("no-such-program-vallum"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing program: err = %v, want not found", err)
	}
}
