package main

import (
	"debug/buildinfo"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "2ffae0e1c3a9d5b7e8f90123456789abcdef0123"
	tests := []struct {
		name, ldflags string
		info          debug.BuildInfo
		want          string
	}{
		{"ldflags win", "v1.4.0", debug.BuildInfo{Main: debug.Module{Version: "v9"}, Settings: vcs(rev, "true")}, "v1.4.0"},
		{"go build in a clone", "dev", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, "dev (commit 2ffae0e1c3a9)"},
		{"changed tree", "dev", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}, "dev (commit 2ffae0e1c3a9+dirty)"},
		{"go install @tag", "dev", debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, "v1.2.0"},
		{"go install @commit", "dev", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130132000-2ffae0e1c3a9"}}, "v0.0.0-20261130132000-2ffae0e1c3a9"},
		{"go build in a clone, tagged", "dev", debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}, Settings: vcs(rev, "false")}, "v1.3.0 (commit 2ffae0e1c3a9)"},
		{"nothing known", "dev", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	}
	for _, tt := range tests {
		if got := buildVersion(tt.ldflags, &tt.info); got != tt.want {
			t.Errorf("%s: buildVersion = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// A plain `go build` in a git checkout prints the commit it was built from
// with -V, and `vallum version` says the same. (Go stamps no commit in a git
// worktree, whose .git is a file, nor with -buildvcs=false: the test then
// checks only that -V prints what the binary's build information says.)
func TestVersionOfAGoBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vallum")
	}
	bin := filepath.Join(t.TempDir(), "vallum")
	if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	want := "vallum " + buildVersion("dev", info) + "\n"
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil && hasVCS(info) {
		if !strings.Contains(want, string(head[:12])) {
			t.Errorf("build information gives %q, want the commit %s", want, head[:12])
		}
	} else {
		t.Logf("no commit stamped in this build (worktree or -buildvcs=false): checking %q only", want)
	}
	for _, args := range [][]string{{"-V"}, {"version"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil || string(out) != want {
			t.Errorf("vallum %s printed %q, %v; want %q", args, out, err, want)
		}
	}
	out, err := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=v7.7.7", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, _ := exec.Command(bin, "-V").CombinedOutput(); string(out) != "vallum v7.7.7\n" {
		t.Errorf("-ldflags version: vallum -V printed %q, want %q", out, "vallum v7.7.7\n")
	}
}

func hasVCS(info *debug.BuildInfo) bool {
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			return true
		}
	}
	return false
}
