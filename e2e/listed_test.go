//go:build e2e

package e2e

import (
	"encoding/csv"
	"strconv"
	"strings"
	"testing"

	"github.com/vallum/vallum/internal/lab"
)

// listed is the list as `vallum list ROOT -o csv` prints it on h: what a
// user and a host read (the keeper's chunks and the per-ban states
// alike; the keeper folds states into chunks at any time), active bans
// only. Prefix -> reason.
func listed(t *testing.T, h *lab.Host, addr string, port int, args ...string) map[string]string {
	t.Helper()
	args = append([]string{"list", root, "-h", addr, "-p", strconv.Itoa(port), "-o", "csv"}, args...)
	cmd := h.Command(vallumBin, args...)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("vallum %s: %v: %s", strings.Join(args, " "), err, errOut.String())
	}
	rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil || len(rows) == 0 || rows[0][0] != "Address" {
		t.Fatalf("vallum list -o csv printed %q: %v", lastLines(string(out), 5), err)
	}
	got := make(map[string]string, len(rows)-1)
	for _, r := range rows[1:] {
		got[r[0]] = r[1]
	}
	return got
}
