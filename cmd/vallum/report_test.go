//go:build !(vallum_small && (mips || mipsle))

package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// A report names its reporter: without a login there is nothing to
// report under, and the command says so before it connects anywhere.
func TestReportNeedsALogin(t *testing.T) {
	for _, user := range []string{"", "a/b", "x#"} {
		args := []string{"ban", "blacklist", "203.0.113.7", "--report", "-h", "127.0.0.1", "-p", "1"}
		if user != "" {
			args = append(args, "-u", user)
		}
		out, err := vallum(t, "", args...)
		if err == nil || !strings.Contains(err.Error(), "--report needs a login") {
			t.Errorf("user %q: %v\n%s", user, err, out)
		}
	}
}

func TestPrintPending(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.Local)
	var b bytes.Buffer
	printPending(&b, []pendingEntry{{netip.MustParsePrefix("203.0.113.7/32"), wire.Pending{Need: 2,
		Reports: []wire.PendingReport{{By: "edge1", At: at, Timeout: 600}, {By: "edge3", At: at, Timeout: 0}}}}})
	want := "203.0.113.7  2/2      edge1 at 2026-11-30 12:00:00 for 10m0s, edge3 at 2026-11-30 12:00:00 for permanent"
	if !strings.Contains(b.String(), want) || !strings.Contains(b.String(), "1 addresses with pending reports") {
		t.Errorf("printPending:\n%s\nwant a line %q", b.String(), want)
	}
}
