package contrib_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The compose example's first steps, run as written, make the users file
// and password files its hub and host need, and the hub's broker (on a
// network address, as in the compose file) accepts the users file. (That
// add-user's users log in is TestBrokerAddUser's part.)
func TestComposeUsersSteps(t *testing.T) {
	bin := buildVallum(t)
	b, err := os.ReadFile(filepath.Join("docker", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start, end := strings.Index(text, "# First make"), strings.Index(text, "# then:")
	if start < 0 || end < start {
		t.Fatal("compose.yaml: no setup steps between \"# First make\" and \"# then:\"")
	}
	var script []string
	for _, l := range strings.Split(text[start:end], "\n") {
		if cmd, ok := strings.CutPrefix(l, "#   "); ok && !strings.HasPrefix(cmd, "chown") { // chown needs root and uid 65532
			script = append(script, cmd)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-ec", strings.Join(script, "\n"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "VALLUM_CONFIG=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compose.yaml's steps fail: %v\n%s\n%s", err, strings.Join(script, "\n"), out)
	}
	for _, f := range []string{"hub/users.yaml", "host/password", "host/admin.password"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the steps do not make %s: %v", f, err)
		}
	}
	out, err := exec.Command(bin, "check-config", "--config", "/dev/null", "-t", "blacklist", "--data-dir", t.TempDir(),
		"--listen", "0.0.0.0:0", "--users", filepath.Join(dir, "hub/users.yaml")).CombinedOutput()
	if err != nil {
		t.Errorf("check-config refuses the hub's users file: %v\n%s", err, out)
	}
}
