#!/bin/sh
# Trimmed copies of six dependencies, for the router builds: writes them
# and a go.mod whose replace lines point at them into DIR, and prints that
# go.mod's path for `go build -modfile`:
#
#   go build -modfile="$(contrib/trim-modules.sh DIR)" ...
#
# What goes is code that vallum's binary links but never runs, which the
# linker cannot tell (344 KB on mips; contrib/build-static.sh), and the
# regexp package (266 KB on mips, below):
#
# - mochi-mqtt's packets/tpackets.go, the sample packets of mochi's own
#   tests: a package variable, so every start built its 179 cases (106 KB,
#   and the memory they take).
# - mochi's listeners from its config (Options.Listeners: TCP, WebSocket,
#   unix socket, HTTP stats and health check, a mock): vallum attaches its
#   own listeners and never sets Options.Listeners. The trimmed
#   AddListenersFromConfig refuses any (41 KB).
# - gorilla/websocket's permessage-deflate (compress/flate): vallum's
#   WebSocket listener and paho's WebSocket dialler never turn it on, so
#   it is never negotiated (82 KB). The trimmed copy's compress functions
#   panic, unreachable unless a future caller enables compression, which
#   the checks below refuse.
# - cast's cases for html/template's string types, which linked
#   html/template and text/template (53 KB): its fallback converts any
#   string-kinded type alike.
# - cobra's text/template, run only for a template the program sets, which
#   vallum does not (61 KB): there the trimmed copy returns an error.
# - regexp: yaml's, cast's and cobra's expressions written out as
#   functions that match alike; viper's TOML and dotenv codecs (gotenv,
#   whose expressions were compiled at start).
#
# Each cut is checked first; a module version that uses the code
# differently stops the build here instead of building something else.
# broker's TestWebSocketRefusesCompression and TestNoListenersFromConfig
# check vallum's side, contrib's TestTrimmedModulesSameCLI that the CLI
# prints the same with and without them, and .ci/qemu-routers runs the
# unit tests on mips built against these copies.
set -eu

dir=${1:?usage: trim-modules.sh DIR}
cd "$(dirname "$0")/.."
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

die() {
	echo "trim-modules.sh: $*" >&2
	exit 1
}

# copy MODULE NAME: a writable copy of the module's source, without tests.
copy() {
	go mod download "$1"
	src=$(go list -m -f '{{.Dir}}' "$1")
	[ -n "$src" ] || die "$1 not in the module cache"
	rm -rf "${dir:?}/$2"
	cp -R "$src" "$dir/$2"
	chmod -R u+w "$dir/$2"
	find "$dir/$2" -name '*_test.go' -exec rm -f {} +
}

copy github.com/mochi-mqtt/server/v2 mochi
m=$dir/mochi
if grep -rl --include='*.go' TPacket "$m" | grep -v '/packets/tpackets.go$'; then
	die "mochi code uses its test packets (above)"
fi
rm -f "$m/packets/tpackets.go"
# The function as in v2.7.9 (its checksum), then a body that refuses.
f='/^func (s \*Server) AddListenersFromConfig/,/^}/'
[ "$(sed -n "${f}p" "$m/server.go" | cksum)" = "2177039277 767" ] ||
	die "mochi's AddListenersFromConfig changed"
[ "$(grep -c 'strings\.' "$m/server.go")" = 1 ] || die "mochi's server.go uses strings elsewhere now"
sed -i -e "${f}c\\
func (s *Server) AddListenersFromConfig(configs []listeners.Config) error {\\
	if len(configs) > 0 {\\
		return errors.New(\"listeners from a config are left out of this build (vallum's contrib/trim-modules.sh)\")\\
	}\\
	return nil\\
}" -e '/^	"strings"$/d' "$m/server.go"

copy github.com/gorilla/websocket websocket
paho=$(go list -m -f '{{.Dir}}' github.com/eclipse/paho.mqtt.golang)
grep -q 'EnableCompression: false,' "$paho/websocket.go" || die "paho's WebSocket dialler may enable compression"
if grep -rn --include='*.go' 'EnableCompression\|EnableWriteCompression\|SetCompressionLevel' \
	--exclude='*_test.go' cmd bridge broker internal; then
	die "vallum code touches WebSocket compression (above)"
fi
# compression.go as in v1.5.3 (its checksum): only its functions are
# called from elsewhere, and the stubs keep their signatures.
[ "$(cksum <"$dir/websocket/compression.go")" = "3160611418 3192" ] || die "gorilla's compression.go changed"
cat >"$dir/websocket/compression.go" <<'EOF'
// Trimmed by vallum's contrib/trim-modules.sh: no permessage-deflate.

package websocket

import "io"

const (
	minCompressionLevel     = -2
	maxCompressionLevel     = 9 // flate.BestCompression
	defaultCompressionLevel = 1
)

func decompressNoContextTakeover(r io.Reader) io.ReadCloser {
	panic("websocket: compression is left out of this build")
}

func isValidCompressionLevel(level int) bool {
	return minCompressionLevel <= level && level <= maxCompressionLevel
}

func compressNoContextTakeover(w io.WriteCloser, level int) io.WriteCloser {
	panic("websocket: compression is left out of this build")
}
EOF

# cast converts html/template's string types by name (template.HTML and
# four more), which links html/template and text/template; its fallback,
# resolveAlias, converts any type whose kind is string the same way.
copy github.com/spf13/cast cast
[ "$(cksum <"$dir/cast/basic.go")" = "443357129 2689" ] || die "cast's basic.go changed"
sed -i -e '/^	"html\/template"$/d' -e '/^	case template\.\(HTML\|URL\|JS\|CSS\|HTMLAttr\):$/{N;d;}' "$dir/cast/basic.go"
! grep -rq --include='*.go' 'template\.\|"html/template"' "$dir/cast" || die "cast uses html/template elsewhere now"

# cobra runs a text/template only for a template set by the program
# (SetUsageTemplate, SetHelpTemplate, SetVersionTemplate); its defaults
# are Go code. vallum sets none: there the trimmed copy returns an error.
copy github.com/spf13/cobra cobra
[ "$(cksum <"$dir/cobra/cobra.go")" = "2210671652 7481" ] || die "cobra's cobra.go changed"
if grep -rn --include='*.go' --exclude='*_test.go' \
	'SetUsageTemplate\|SetHelpTemplate\|SetVersionTemplate\|AddTemplateFunc' cmd; then
	die "vallum sets a cobra template (above)"
fi
sed -i -e '/^	"text\/template"$/d' \
	-e 's/^var templateFuncs = template\.FuncMap{$/var templateFuncs = map[string]interface{}{/' \
	-e 's/^func AddTemplateFuncs(tmplFuncs template\.FuncMap) {$/func AddTemplateFuncs(tmplFuncs map[string]interface{}) {/' \
	-e '/^			t := template\.New("top")$/,/^			return t\.Execute(w, data)$/c\
			return fmt.Errorf("cobra: templates are left out of this build (vallum'"'"'s contrib/trim-modules.sh)")' \
	"$dir/cobra/cobra.go"
! grep -q 'template\.' "$dir/cobra/cobra.go" || die "cobra's cobra.go still uses text/template"
! grep -rq --include='*.go' 'text/template' "$dir/cobra" || die "cobra uses text/template elsewhere now"


# The router builds link no regexp package once these four regular
# expressions are functions: yaml's two floats, cast's decimal and
# cobra's environment variable name (vallum's check-config wrote its own
# out), and viper no longer starts gotenv (below). 266 KB on mips (armv7
# 246 KB, arm64 197 KB): regexp, its parser and the Unicode tables only
# it reads (155 KB of symbols), with their metadata. Each function
# matches what its expression matches: contrib's
# TestTrimmedRegexpsMatchAlike compares them on every short string.
# unregexp FILE LINE DECL: LINE, the expression as in the version cut,
# becomes DECL; FILE then imports no regexp.
unregexp() {
	grep -qxF "$2" "$1" || die "$1 changed: no $2"
	[ "$(grep -c 'regexp\.' "$1")" = 1 ] || die "$1 uses regexp elsewhere now"
	OLD=$2 NEW=$3 awk '$0 == ENVIRON["OLD"] { print ENVIRON["NEW"]; next }
		$0 != "\t\"regexp\"" { print }' "$1" >"$1.new"
	mv "$1.new" "$1"
}
# noregexp MODULE_DIR: the copy has no regexp left.
noregexp() {
	! grep -rq --include='*.go' '"regexp"' "$1" || die "$1 uses regexp elsewhere now"
}

copy go.yaml.in/yaml/v3 yaml
unregexp "$dir/yaml/encode.go" 'var base60float = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`)' \
	'var base60float = matchFunc(matchBase60Float)'
unregexp "$dir/yaml/resolve.go" 'var yamlStyleFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)' \
	'var yamlStyleFloat = matchFunc(matchYAMLFloat)'
noregexp "$dir/yaml"
cat >"$dir/yaml/vallum_match.go" <<'EOF'
// Added by vallum's contrib/trim-modules.sh: two regular expressions
// written out, so that no regexp package is linked.

package yaml

type matchFunc func(string) bool

func (f matchFunc) MatchString(s string) bool { return f(s) }

// digitsFrom returns the index after the run of digits (and of
// underscores, if under) that starts at i.
func digitsFrom(s string, i int, under bool) int {
	for i < len(s) && ('0' <= s[i] && s[i] <= '9' || under && s[i] == '_') {
		i++
	}
	return i
}

func signFrom(s string, i int) int {
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		return i + 1
	}
	return i
}

// ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
func matchYAMLFloat(s string) bool {
	i := signFrom(s, 0)
	if d := digitsFrom(s, i, false); d > i {
		i = d
		if i < len(s) && s[i] == '.' {
			i = digitsFrom(s, i+1, false)
		}
	} else {
		if i >= len(s) || s[i] != '.' {
			return false
		}
		if d = digitsFrom(s, i+1, false); d == i+1 {
			return false
		}
		i = d
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i = signFrom(s, i+1)
		d := digitsFrom(s, i, false)
		if d == i {
			return false
		}
		i = d
	}
	return i == len(s)
}

// ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$
func matchBase60Float(s string) bool {
	i := signFrom(s, 0)
	if i >= len(s) || s[i] < '0' || s[i] > '9' {
		return false
	}
	i = digitsFrom(s, i+1, true)
	groups := 0
	for i < len(s) && s[i] == ':' {
		d := digitsFrom(s, i+1, false)
		if d != i+2 && (d != i+3 || s[i+1] > '5') {
			return false
		}
		i = d
		groups++
	}
	if groups == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i = digitsFrom(s, i+1, true)
	}
	return i == len(s)
}
EOF

# cast's decimal, ^([-+]?\d*)(\.\d*)?$ (\d: ASCII digits).
unregexp "$dir/cast/number.go" 'var stringNumberRe = regexp.MustCompile(`^([-+]?\d*)(\.\d*)?$`)' \
	'var stringNumberRe numberRe'
noregexp "$dir/cast"
cat >"$dir/cast/vallum_match.go" <<'EOF'
// Added by vallum's contrib/trim-modules.sh: a regular expression written
// out, so that no regexp package is linked.

package cast

type numberRe struct{}

// FindStringSubmatch as regexp's for ^([-+]?\d*)(\.\d*)?$.
func (numberRe) FindStringSubmatch(s string) []string {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	j := i
	if j < len(s) && s[j] == '.' {
		j++
		for j < len(s) && '0' <= s[j] && s[j] <= '9' {
			j++
		}
	}
	if j != len(s) {
		return nil
	}
	return []string{s, s[:i], s[i:]}
}
EOF

# cobra's environment variable name, [^A-Z0-9_] replaced (per rune, as
# regexp: an invalid byte is one U+FFFD) by "_", which has no $ to expand.
grep -qxF '	v = configEnvVarPrefixSubstRegexp.ReplaceAllString(v, "_")' "$dir/cobra/completions.go" ||
	die "cobra's configEnvVar changed"
unregexp "$dir/cobra/completions.go" 'var configEnvVarPrefixSubstRegexp = regexp.MustCompile(`[^A-Z0-9_]`)' \
	'var configEnvVarPrefixSubstRegexp envVarRe'
noregexp "$dir/cobra"
cat >"$dir/cobra/vallum_match.go" <<'EOF'
// Added by vallum's contrib/trim-modules.sh: a regular expression written
// out, so that no regexp package is linked.

package cobra

import (
	"strings"
	"unicode/utf8"
)

type envVarRe struct{}

// ReplaceAllString as regexp's for [^A-Z0-9_]: each other rune becomes repl.
func (envVarRe) ReplaceAllString(s, repl string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' {
			b.WriteByte(c)
			i++
			continue
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		b.WriteString(repl)
		i += n
	}
	return b.String()
}
EOF

# viper's TOML and dotenv codecs, which it reads and writes config files
# with: vallum decodes its YAML file itself and hands viper a map, so the
# linker drops them but keeps what go-toml, gotenv and golang.org/x/text
# run at start: gotenv compiles four regular expressions there, which
# links regexp (above), and the rest is 12 KB on mips. The trimmed copy
# knows YAML and JSON files only.
if grep -rn --include='*.go' --exclude='*_test.go' \
	'\.\(ReadInConfig\|ReadConfig\|MergeInConfig\|MergeConfig\|WriteConfig\w*\|SafeWriteConfig\w*\|SetConfigType\|SetConfigFile\|WatchConfig\)(' \
	cmd internal bridge broker; then
	die "vallum has viper read or write a config file (above)"
fi
copy github.com/spf13/viper viper
[ "$(cksum <"$dir/viper/encoding.go")" = "1712147826 4015" ] || die "viper's encoding.go changed"
sed -i -e '/^	case "toml":$/,/^		return &dotenv\.Codec{}, true$/d' \
	-e '/^	"github\.com\/spf13\/viper\/internal\/encoding\/\(dotenv\|toml\)"$/d' "$dir/viper/encoding.go"
! grep -rq --include='*.go' 'internal/encoding/\(dotenv\|toml\)"' "$dir/viper" || die "viper uses its TOML or dotenv codec elsewhere now"
# viper's Get converts a value to the type of its default only when the
# program asked for it (SetTypeByDefaultValue), which vallum does not: it
# converts what Get returns itself, with cast. The copy's Get returns the
# value as found (12 KB on mips: cast's time, unsigned and slice cases).
if grep -rn --include='*.go' --exclude='*_test.go' 'TypeByDefaultValue' cmd internal bridge broker; then
	die "vallum has viper convert by default value (above)"
fi
f='/^	if v\.typeByDefValue {$/,/^	}$/'
[ "$(sed -n "${f}p" "$dir/viper/viper.go" | cksum)" = "2630137610 887" ] || die "viper's Get changed"
[ "$(grep -c 'typeByDefValue' "$dir/viper/viper.go")" = 4 ] || die "viper uses typeByDefValue elsewhere now"
sed -i "${f}d" "$dir/viper/viper.go"

cp go.mod "$dir/go.mod"
cp go.sum "$dir/go.sum"
go mod edit -modfile="$dir/go.mod" \
	-replace github.com/mochi-mqtt/server/v2="$dir/mochi" \
	-replace github.com/gorilla/websocket="$dir/websocket" \
	-replace github.com/spf13/cast="$dir/cast" \
	-replace github.com/spf13/cobra="$dir/cobra" \
	-replace go.yaml.in/yaml/v3="$dir/yaml" \
	-replace github.com/spf13/viper="$dir/viper"
echo "$dir/go.mod"
