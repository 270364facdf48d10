package contrib_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// procdStubs replaces /etc/rc.common, /lib/functions.sh and procd.sh: UCI
// reads come from CONFIG_<section>_<option> variables (the way the real
// functions.sh keeps a loaded config), procd calls print one record per
// argument: "set|append <TAB> param <TAB> arg".
const procdStubs = `
config_load() { :; }
config_foreach() {
	local _fn=$1 _s; shift
	for _s in $CONFIG_SECTIONS; do "$_fn" "$_s" "$@"; done
}
config_get() {
	eval "_v=\${CONFIG_$2_$3-}"
	[ -n "$_v" ] || _v=${4-}
	eval "$1=\$_v"
}
config_get_bool() {
	config_get "$@"
	eval "_v=\$$1"
	case "$_v" in
	1|on|true|yes|enabled) _v=1 ;;
	*) _v=0 ;;
	esac
	eval "$1=\$_v"
}
config_list_foreach() {
	local _sec=$1 _opt=$2 _fn=$3 _n _i _val; shift 3
	eval "_n=\${CONFIG_${_sec}_${_opt}_LENGTH:-0}"
	_i=1
	while [ "$_i" -le "$_n" ]; do
		eval "_val=\${CONFIG_${_sec}_${_opt}_ITEM$_i}"
		"$_fn" "$_val" "$@"
		_i=$((_i + 1))
	done
}
procd_open_instance() { printf 'open\t%s\n' "$1"; }
procd_close_instance() { printf 'close\n'; }
procd_set_param() { _p=$1; shift; printf 'set\t%s\n' "$_p"; for _a; do printf 'arg\t%s\n' "$_a"; done; }
procd_append_param() { _p=$1; shift; printf 'append\t%s\n' "$_p"; for _a; do printf 'arg\t%s\n' "$_a"; done; }
`

// uciSection is one `config TYPE 'NAME'` block.
type uciSection struct {
	typ, name string
	options   map[string]string
	lists     map[string][]string
}

// parseUCI reads the subset of UCI syntax the shipped config uses: config,
// option, list, comments, values quoted with ' or " or bare.
func parseUCI(t *testing.T, text string) []uciSection {
	t.Helper()
	var secs []uciSection
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kw, rest, _ := strings.Cut(line, " ")
		key, val, _ := strings.Cut(strings.TrimSpace(rest), " ")
		key, val = unquote(key), unquote(strings.TrimSpace(val))
		switch {
		case kw == "config":
			secs = append(secs, uciSection{typ: key, name: val, options: map[string]string{}, lists: map[string][]string{}})
		case len(secs) == 0:
			t.Fatalf("uci line %d: %q outside a section", n, line)
		case kw == "option":
			secs[len(secs)-1].options[key] = val
		case kw == "list":
			secs[len(secs)-1].lists[key] = append(secs[len(secs)-1].lists[key], val)
		default:
			t.Fatalf("uci line %d: unknown keyword %q", n, kw)
		}
	}
	return secs
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// shellQuote quotes s for sh, single quotes inside included.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// uciShell turns parsed sections into the variables config_load would set.
func uciShell(secs []uciSection) string {
	var b strings.Builder
	var names []string
	for _, s := range secs {
		names = append(names, s.name)
		for k, v := range s.options {
			fmt.Fprintf(&b, "CONFIG_%s_%s=%s\n", s.name, k, shellQuote(v))
		}
		for k, vs := range s.lists {
			fmt.Fprintf(&b, "CONFIG_%s_%s_LENGTH=%d\n", s.name, k, len(vs))
			for i, v := range vs {
				fmt.Fprintf(&b, "CONFIG_%s_%s_ITEM%d=%s\n", s.name, k, i+1, shellQuote(v))
			}
		}
	}
	fmt.Fprintf(&b, "CONFIG_SECTIONS=%s\n", shellQuote(strings.Join(names, " ")))
	return b.String()
}

// procdInstance is what the init script handed to procd for one instance.
type procdInstance struct {
	Name   string
	Params map[string][]string
}

// runInit runs start_service of the shipped init script under sh with the
// stubs and the given UCI config, and returns the instances it opened.
func runInit(t *testing.T, uci string) []procdInstance {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	script := procdStubs + uciShell(parseUCI(t, uci)) +
		". " + shellQuote(filepath.Join("openwrt", "files", "vallum.init")) + "\nstart_service\n"
	cmd := exec.Command(sh, "-eu", "-c", script)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh start_service: %v\n%s", err, out)
	}
	var insts []procdInstance
	var cur *procdInstance
	var param string
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		kind, val, _ := strings.Cut(line, "\t")
		switch kind {
		case "open":
			insts = append(insts, procdInstance{Name: val, Params: map[string][]string{}})
			cur = &insts[len(insts)-1]
		case "close":
			cur = nil
		case "set", "append":
			if cur == nil {
				t.Fatalf("procd_%s_param %s outside an instance", kind, val)
			}
			param = val
			if kind == "set" {
				cur.Params[param] = []string{}
			}
		case "arg":
			cur.Params[param] = append(cur.Params[param], val)
		default:
			t.Fatalf("unexpected output line %q", line)
		}
	}
	return insts
}

func commonParams(cmd ...string) map[string][]string {
	return map[string][]string{
		"command":       cmd,
		"respawn":       {"3600", "5", "5"},
		"stdout":        {"1"},
		"stderr":        {"1"},
		"file":          {"/etc/config/vallum"},
		"reload_signal": {"HUP"},
	}
}

func TestOpenWrtInit(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join("openwrt", "files", "vallum.config"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		uci  string
		want []procdInstance
	}{
		{
			name: "shipped config: embedded broker, nft in vallum's table",
			uci:  string(shipped),
			want: []procdInstance{{Name: "main", Params: commonParams(
				"/usr/bin/vallum", "--port", "1883", "--topic", "blacklist",
				"--backend", "nft", "--nft-table", "inet vallum",
				"--kill-connections", "blacklist",
				"--log-level", "info", "--data-dir", "/var/lib/vallum",
				"--listen", "127.0.0.1:1883")}},
		},
		{
			name: "remote broker with TLS, two lists, fw4 table, password by env",
			uci: `
config vallum 'edge'
	option host 'mqtt.example.net'
	option port '8883'
	option user 'router 1'
	option password 's3cr3t it'
	option tls 'yes'
	option cafile '/etc/vallum/ca.pem'
	list topic 'blacklist'
	list topic 'site1/scanners=scan4,scan6'
	option backend 'nft'
	option nft_table 'inet fw4'
	option nft_rules '0'
	option no_create '1'
	list allow '192.168.1.0/24'
	list allow 'fd00::/8'
	option log_level 'debug'
	list listen '0.0.0.0:1883'
	option users '/etc/vallum/users.yaml'

config vallum 'off'
	option enabled '0'
	option host 'other'
`,
			want: []procdInstance{{Name: "edge", Params: func() map[string][]string {
				p := commonParams(
					"/usr/bin/vallum", "--host", "mqtt.example.net", "--port", "8883",
					"--user", "router 1", "--tls", "--cafile", "/etc/vallum/ca.pem",
					"--topic", "blacklist", "--topic", "site1/scanners=scan4,scan6",
					"--backend", "nft", "--nft-table", "inet fw4", "--no-create",
					"--allow", "192.168.1.0/24", "--allow", "fd00::/8",
					"--log-level", "debug")
				p["env"] = []string{"VALLUM_PASSWORD=s3cr3t it"}
				return p
			}()}},
		},
		{
			name: "ipset backend: no nft table, embedded broker options",
			uci: `
config vallum 'fw3'
	option backend 'ipset'
	option nft_table 'inet vallum'
	list topic 'blacklist'
	option password_file '/etc/vallum/pw'
	list listen 'tcp://0.0.0.0:1883'
	list listen 'ws://0.0.0.0:8080'
	option users '/etc/vallum/users.yaml'
	option allow_anonymous '0'
	option tls_cert '/etc/vallum/cert.pem'
	option tls_key '/etc/vallum/key.pem'
	option maxelem '65536'
	option metrics '127.0.0.1:9101'
`,
			want: []procdInstance{{Name: "fw3", Params: commonParams(
				"/usr/bin/vallum", "--password-file", "/etc/vallum/pw",
				"--topic", "blacklist", "--backend", "ipset", "--maxelem", "65536",
				"--metrics", "127.0.0.1:9101",
				"--listen", "tcp://0.0.0.0:1883", "--listen", "ws://0.0.0.0:8080",
				"--users", "/etc/vallum/users.yaml",
				"--tls-cert", "/etc/vallum/cert.pem", "--tls-key", "/etc/vallum/key.pem")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runInit(t, tt.uci)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("procd instances (-want +got):\n%s", diff)
			}
		})
	}
}
