package contrib_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrimmedModulesSameCLI: the router builds link trimmed copies of
// mochi, gorilla/websocket, cast and cobra (trim-modules.sh). Built with
// them, vallum prints the same help, completion scripts and errors as the
// Dockerfile's build without them: cobra's templates and cast's
// html/template cases are not what vallum runs. (The broker's side of the
// mochi and gorilla cuts: broker/trim_test.go.)
func TestTrimmedModulesSameCLI(t *testing.T) {
	plain := buildVallum(t)
	dir := t.TempDir()
	out, err := exec.Command("sh", "trim-modules.sh", filepath.Join(dir, "mod")).CombinedOutput()
	if err != nil {
		t.Fatalf("trim-modules.sh: %v\n%s", err, out)
	}
	modfile := strings.TrimSpace(string(out))
	if !strings.HasSuffix(modfile, "go.mod") {
		t.Fatalf("trim-modules.sh printed %q, want the path of a go.mod", out)
	}
	trimmed := filepath.Join(dir, "vallum")
	flags := strings.ReplaceAll(goBuildFlags(t, filepath.Join("..", "Dockerfile")), "$VERSION", "contrib-test")
	cmd := exec.Command("sh", "-c", `go build `+flags+` -o "$OUT" ./cmd/vallum`)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "OUT="+trimmed, "modfile=-modfile="+modfile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build with the trimmed modules: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"--help"}, {"ban", "--help"}, {"help", "list"}, {"broker", "--help"}, {"check-config", "--help"},
		{"completion", "bash"}, {"completion", "zsh"}, {"completion", "fish"}, {"completion", "powershell"},
		{"__complete", "ban", "blacklist", ""}, {"nosuch"}, {"ban"}, {"version"},
	} {
		want, werr := exec.Command(plain, args...).CombinedOutput()
		got, gerr := exec.Command(trimmed, args...).CombinedOutput()
		if string(got) != string(want) || (werr == nil) != (gerr == nil) {
			t.Errorf("vallum %q: trimmed build printed (%v)\n%s\nwant (%v)\n%s", args, gerr, got, werr, want)
		}
	}
}
