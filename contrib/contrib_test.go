// Package contrib_test checks the deployment files under contrib/ and the
// Dockerfile: the tools that read them are run where they exist (sh, nft,
// iptables, systemd-analyze, go build), and skipped cleanly where not.
package contrib_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// unitKeys parses a systemd unit file into section -> key -> values (a key
// may repeat). Comments and continuation lines are not used by our units.
func unitKeys(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			keys[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", path, line)
			}
			keys[section][k] = append(keys[section][k], v)
		}
	}
	return keys
}

func TestSystemdUnits(t *testing.T) {
	hardening := map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectControlGroups":    "yes",
		"RestrictNamespaces":      "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"SystemCallFilter":        "@system-service",
		"StateDirectory":          "vallum",
		"User":                    "vallum",
		"Restart":                 "on-failure",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
	}
	tests := []struct {
		unit     string
		want     map[string]string // [Service] key -> one of its values
		families string
	}{
		{
			unit: "vallum.service",
			want: map[string]string{
				"ExecStart":             "/usr/bin/vallum --config /etc/vallum/vallum.yaml",
				"AmbientCapabilities":   "CAP_NET_ADMIN",
				"CapabilityBoundingSet": "CAP_NET_ADMIN",
			},
			families: "AF_NETLINK AF_INET AF_INET6 AF_UNIX",
		},
		{
			unit: "vallum-broker.service",
			want: map[string]string{
				"ExecStart":             "/usr/bin/vallum broker --config /etc/vallum/broker.yaml",
				"AmbientCapabilities":   "",
				"CapabilityBoundingSet": "",
			},
			families: "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
		},
		{
			unit: "vallum-keeper.service",
			want: map[string]string{
				"ExecStart":             "/usr/bin/vallum keeper --config /etc/vallum/keeper.yaml",
				"AmbientCapabilities":   "",
				"CapabilityBoundingSet": "",
			},
			families: "AF_INET AF_INET6 AF_UNIX",
		},
	}
	for _, tt := range tests {
		t.Run(tt.unit, func(t *testing.T) {
			path := filepath.Join("systemd", tt.unit)
			keys := unitKeys(t, path)
			svc := keys["Service"]
			want := map[string]string{"RestrictAddressFamilies": tt.families}
			for k, v := range hardening {
				want[k] = v
			}
			for k, v := range tt.want {
				want[k] = v
			}
			for k, v := range want {
				if !slices.Contains(svc[k], v) {
					t.Errorf("%s: [Service] %s = %q, want %q among them", tt.unit, k, svc[k], v)
				}
			}
			verifyUnit(t, path)
		})
	}
	// The bridge must run before the firewalls that load rules naming its
	// sets, and so cannot wait for network-online.target (a cycle).
	unit := unitKeys(t, filepath.Join("systemd", "vallum.service"))["Unit"]
	before := strings.Join(unit["Before"], " ")
	for _, u := range []string{"netfilter-persistent.service", "iptables.service", "firewalld.service", "network-pre.target"} {
		if !strings.Contains(before, u) {
			t.Errorf("vallum.service: Before= %q lacks %s", before, u)
		}
	}
	if after := strings.Join(unit["After"], " "); strings.Contains(after, "network-online.target") {
		t.Errorf("vallum.service: After=%q: ordering cycle with Before=network-pre.target", after)
	}
}

// verifyUnit runs systemd-analyze verify on a copy of the unit whose
// /usr/bin/vallum is replaced by an executable that exists here, and fails
// on any complaint about the unit (unknown keys are only warnings there).
func verifyUnit(t *testing.T, path string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("no systemd-analyze: unit checked by its keys only")
		return
	}
	exe, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(text), "/usr/bin/vallum", exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", copyPath).CombinedOutput()
	if err != nil || strings.Contains(string(out), filepath.Base(path)) {
		t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
	}
}

// goBuildFlags returns the go build flags (between "go build" and "-o")
// of the first `go build` in file.
func goBuildFlags(t *testing.T, file string) string {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`go build (.*?) -o `).FindStringSubmatch(string(text))
	if m == nil {
		t.Fatalf("%s: no `go build ... -o` line", file)
	}
	return m[1]
}

func TestDockerfile(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(text)
	final := df[strings.LastIndex(df, "\nFROM "):]
	for _, want := range []string{
		"FROM gcr.io/distroless/static",
		"COPY --from=build /out/vallum /vallum\n",
		`ENTRYPOINT ["/vallum"]`,
	} {
		if !strings.Contains(final, want) {
			t.Errorf("final stage lacks %q:\n%s", want, final)
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindAllStringSubmatch(final, -1)
	if len(user) == 0 {
		t.Fatalf("final stage has no USER:\n%s", final)
	}
	if u := user[len(user)-1][1]; u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root") {
		t.Errorf("final stage runs as USER %s, want non-root", u)
	}
	// NET_ADMIN reaches the non-root process only as a file capability.
	if !strings.Contains(df, "setcap cap_net_admin=ep /out/vallum") {
		t.Error("build stage does not setcap cap_net_admin=ep the binary")
	}
	for _, want := range []string{"--network host", "--cap-add NET_ADMIN"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile does not document %q", want)
		}
	}
	dflags := goBuildFlags(t, filepath.Join("..", "Dockerfile"))
	if sflags := goBuildFlags(t, "build-static.sh"); dflags != sflags {
		t.Errorf("go build flags differ:\nDockerfile:      %s\nbuild-static.sh: %s", dflags, sflags)
	}
	for _, want := range []string{"-trimpath", "-s -w", "-X main.version="} {
		if !strings.Contains(dflags, want) {
			t.Errorf("go build flags %q lack %q", dflags, want)
		}
	}
	bin := buildVallum(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "contrib-test") {
		t.Errorf("%s version = %q, %v; want the version set by -X main.version", bin, out, err)
	}
}

var (
	buildOnce sync.Once
	buildBin  string
	buildOut  []byte
	buildErr  error
)

// buildVallum runs the Dockerfile's go build line (CGO off, VERSION
// contrib-test) once per test binary and returns the binary's path.
func buildVallum(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join("..", "cmd", "vallum")); err != nil {
		t.Skip("cmd/vallum does not exist yet")
	}
	if testing.Short() {
		t.Skip("-short: not building cmd/vallum")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	flags := strings.ReplaceAll(goBuildFlags(t, filepath.Join("..", "Dockerfile")), "$VERSION", "contrib-test")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vallum-contrib-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "vallum")
		script := `"$GO" build ` + flags + ` -o "$OUT" ./cmd/vallum`
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO="+goTool, "OUT="+buildBin)
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build (Dockerfile line): %v\n%s", buildErr, buildOut)
	}
	return buildBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildBin != "" {
		os.RemoveAll(filepath.Dir(buildBin))
	}
	os.Exit(code)
}

// TestExampleConfig checks that every key of contrib/vallum.yaml is one the
// binary knows (unknown keys are errors there) and that it loads as is.
func TestExampleConfig(t *testing.T) {
	bin := buildVallum(t)
	out, err := exec.Command(bin, "check-config", "--config", "vallum.yaml").CombinedOutput()
	if err != nil {
		t.Errorf("vallum check-config --config contrib/vallum.yaml: %v\n%s", err, out)
	}
}

// TestFileCapability proves the Dockerfile's way of giving CAP_NET_ADMIN to
// a non-root process: the binary, setcap cap_net_admin=ep, run as uid 65532
// with NET_ADMIN in the bounding set (docker --cap-add NET_ADMIN), creates
// its sets; without it in the bounding set the kernel refuses the exec.
func TestFileCapability(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (setcap, setpriv, network namespaces)")
	}
	for _, tool := range []string{"setcap", "setpriv", "unshare", "nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	bin := buildVallum(t)
	// Not t.TempDir: its parent is 0700, out of reach of uid 65532.
	dir, err := os.MkdirTemp("", "vallum-cap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	capBin := filepath.Join(dir, "vallum")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(capBin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("setcap", "cap_net_admin=ep", capBin).CombinedOutput(); err != nil {
		t.Skipf("setcap (filesystem without xattrs?): %v %s", err, out)
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dataDir, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	asNonroot := "setpriv --reuid=65532 --regid=65532 --clear-groups --inh-caps=-all"
	out := inNetns(t, `
ip link set lo up
`+asNonroot+` --bounding-set=-all,+net_admin `+shellQuote(capBin)+` --backend nft -t blacklist --data-dir `+shellQuote(dataDir)+` >`+shellQuote(filepath.Join(dir, "log"))+` 2>&1 &
pid=$!
i=0
while [ $i -lt 100 ] && ! nft list set inet vallum blacklist >/dev/null 2>&1; do sleep 0.1; i=$((i+1)); done
grep CapEff /proc/$pid/status || true
kill $pid
wait $pid && echo "exit 0"
nft list table inet vallum | grep -o 'set [a-z0-9_]*'
if `+asNonroot+` --bounding-set=-all `+shellQuote(capBin)+` version 2>/dev/null; then echo "started without NET_ADMIN"; else echo "refused without NET_ADMIN"; fi
`)
	for _, want := range []string{
		"CapEff:\t0000000000001000", // CAP_NET_ADMIN (12) and nothing else
		"exit 0",
		"set blacklist\n", "set blacklist6\n",
		"refused without NET_ADMIN",
	} {
		if !strings.Contains(out, want) {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Errorf("output lacks %q:\n%s\nvallum log:\n%s", want, out, log)
		}
	}
}
