package contrib_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrimmedModulesSameCLI: the router builds link trimmed copies of
// mochi, gorilla/websocket, cast, cobra, yaml and viper (trim-modules.sh).
// Built with them, vallum prints the same help, completion scripts, errors
// and check-config settings as the Dockerfile's build without them:
// cobra's templates, cast's html/template cases and viper's TOML, dotenv
// and conversion by default value are not what vallum runs, and yaml's
// and cast's expressions written out read numbers alike. (The broker's
// side of the mochi and gorilla cuts: broker/trim_test.go.)
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
	// A config file whose values YAML, viper and cast convert (floats
	// spelt many ways, hex, underscores, a decimal string for an int, a
	// value from the environment): check-config prints what they became.
	config := filepath.Join(dir, "vallum.yaml")
	if err := os.WriteFile(config, []byte(trimConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VALLUM_SYNC_TIMEOUT", "2m")
	for _, args := range [][]string{
		{"--help"}, {"ban", "--help"}, {"help", "list"}, {"broker", "--help"}, {"check-config", "--help"},
		{"completion", "bash"}, {"completion", "zsh"}, {"completion", "fish"}, {"completion", "powershell"},
		{"__complete", "ban", "blacklist", ""}, {"nosuch"}, {"ban"}, {"version"},
		{"check-config", "--config", config}, {"check-config", "--config", config, "-t", "bl", "--port", "1e2"},
	} {
		want, werr := exec.Command(plain, args...).CombinedOutput()
		got, gerr := exec.Command(trimmed, args...).CombinedOutput()
		if string(got) != string(want) || (werr == nil) != (gerr == nil) {
			t.Errorf("vallum %q: trimmed build printed (%v)\n%s\nwant (%v)\n%s", args, gerr, got, werr, want)
		}
	}
}

const trimConfig = `host: 1e3
port: 1883
user: 1_000
client_id: 0x1F
password_file: "1:30"
tls: true
qos: "1.50"
widest_v4: +8.
broker: [tcp://a:1, .5, 190:20:30.15, -.inf, 0o17, 1.5e+3]
topic: [blacklist, 2.50, 1:2]
`

// TestTrimmedRegexpsMatchAlike: trim-modules.sh writes out yaml's, cast's
// and cobra's regular expressions as functions, so that the router builds
// link no regexp. Inside each trimmed copy, a test compares each function
// with its expression on every string of up to 5 or 6 bytes from an
// alphabet of every class the expression tells apart.
func TestTrimmedRegexpsMatchAlike(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the trimmed modules")
	}
	dir := filepath.Join(t.TempDir(), "mod")
	if out, err := exec.Command("sh", "trim-modules.sh", dir).CombinedOutput(); err != nil {
		t.Fatalf("trim-modules.sh: %v\n%s", err, out)
	}
	for mod, test := range regexpTests {
		if err := os.WriteFile(filepath.Join(dir, mod, "vallum_regexp_test.go"), []byte(test), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("go", "test", "-count=1", "-run", "TestVallum", ".")
		cmd.Dir = filepath.Join(dir, mod)
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ok") {
			t.Errorf("%s: %v\n%s", mod, err, out)
		}
	}
}

// The tests put into the trimmed copies: each walks every string over its
// alphabet and fails at the first the function and the expression tell
// apart, and fails if it walked fewer strings than the alphabet has.
var regexpTests = map[string]string{
	"yaml": `package yaml

import (
	"regexp"
	"testing"
)

func TestVallumFloats(t *testing.T) {
	float := regexp.MustCompile(` + "`" + `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$` + "`" + `)
	base60 := regexp.MustCompile(` + "`" + `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$` + "`" + `)
	n := 0
	walk("", 6, []string{"+", "-", "0", "5", "6", "9", ".", "e", "E", "_", ":", "x"}, func(s string) {
		n++
		if got, want := yamlStyleFloat.MatchString(s), float.MatchString(s); got != want {
			t.Fatalf("yamlStyleFloat(%q) = %v, the regexp says %v", s, got, want)
		}
		if got, want := base60float.MatchString(s), base60.MatchString(s); got != want {
			t.Fatalf("base60float(%q) = %v, the regexp says %v", s, got, want)
		}
	})
	if n < 3000000 {
		t.Fatalf("only %d strings", n)
	}
}
` + walkFunc,
	"cast": `package cast

import (
	"reflect"
	"regexp"
	"testing"
)

func TestVallumDecimal(t *testing.T) {
	re := regexp.MustCompile(` + "`" + `^([-+]?\d*)(\.\d*)?$` + "`" + `)
	n := 0
	walk("", 6, []string{"+", "-", "0", "9", ".", "a", " ", "\u0663"}, func(s string) {
		n++
		if got, want := stringNumberRe.FindStringSubmatch(s), re.FindStringSubmatch(s); !reflect.DeepEqual(got, want) {
			t.Fatalf("stringNumberRe(%q) = %q, the regexp says %q", s, got, want)
		}
	})
	if n < 250000 {
		t.Fatalf("only %d strings", n)
	}
	if got := ToInt("-12.50"); got != -12 {
		t.Fatalf("ToInt(-12.50) = %d", got)
	}
}
` + walkFunc,
	"cobra": `package cobra

import (
	"regexp"
	"testing"
)

func TestVallumEnvVar(t *testing.T) {
	re := regexp.MustCompile(` + "`" + `[^A-Z0-9_]` + "`" + `)
	n := 0
	walk("", 5, []string{"A", "Z", "a", "0", "9", "_", "-", " ", "é", "日", "\xff"}, func(s string) {
		n++
		if got, want := configEnvVarPrefixSubstRegexp.ReplaceAllString(s, "_"), re.ReplaceAllString(s, "_"); got != want {
			t.Fatalf("configEnvVarPrefixSubstRegexp(%q) = %q, the regexp says %q", s, got, want)
		}
	})
	if n < 170000 {
		t.Fatalf("only %d strings", n)
	}
	if got := configEnvVar("my-prog.é", "X"); got != "MY_PROG___X" {
		t.Fatalf("configEnvVar = %q", got)
	}
}
` + walkFunc,
}

const walkFunc = `
func walk(s string, depth int, alphabet []string, f func(string)) {
	f(s)
	if depth == 0 {
		return
	}
	for _, c := range alphabet {
		walk(s+c, depth-1, alphabet, f)
	}
}
`
