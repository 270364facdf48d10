#!/bin/sh
# Trimmed copies of four dependencies, for the router builds: writes them
# and a go.mod whose replace lines point at them into DIR, and prints that
# go.mod's path for `go build -modfile`:
#
#   go build -modfile="$(contrib/trim-modules.sh DIR)" ...
#
# What goes is code that vallum's binary links but never runs, which the
# linker cannot tell (344 KB on mips; contrib/build-static.sh):
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

cp go.mod "$dir/go.mod"
cp go.sum "$dir/go.sum"
go mod edit -modfile="$dir/go.mod" \
	-replace github.com/mochi-mqtt/server/v2="$dir/mochi" \
	-replace github.com/gorilla/websocket="$dir/websocket" \
	-replace github.com/spf13/cast="$dir/cast" \
	-replace github.com/spf13/cobra="$dir/cobra"
echo "$dir/go.mod"
