// Package fail2ban ships vallum's fail2ban actions and example jails. The
// files in action.d and jail.d are the source; they are embedded so that
// `vallum fail2ban-action` can print them on a host that has only the
// binary.
package fail2ban

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

//go:embed action.d/*.conf jail.d/*.local
var files embed.FS

// Files returns the shipped files: action.d/vallum.conf,
// action.d/vallum-mqtt.conf, action.d/vallum-report.conf and
// jail.d/vallum-*.local.
func Files() fs.FS { return files }

// Action returns action.d/vallum.conf, the action that publishes bans as
// state with `vallum ban` and `vallum unban`.
func Action() []byte { return mustRead("action.d/vallum.conf") }

// MQTTAction returns action.d/vallum-mqtt.conf, the mosquitto_pub action
// that publishes vallumd-style events only.
func MQTTAction() []byte { return mustRead("action.d/vallum-mqtt.conf") }

// ReportAction returns action.d/vallum-report.conf, vallum.conf's variant
// that reports to the list's keeper (`vallum ban --report`).
func ReportAction() []byte { return mustRead("action.d/vallum-report.conf") }

// Jails returns the names of the example jails: "nginx", "postfix-sasl",
// "sshd", from jail.d/vallum-NAME.local.
func Jails() []string {
	ents, _ := fs.ReadDir(files, "jail.d")
	var names []string
	for _, e := range ents {
		n := strings.TrimSuffix(strings.TrimPrefix(e.Name(), "vallum-"), ".local")
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Jail returns the example jail file jail.d/vallum-NAME.local.
func Jail(name string) ([]byte, error) {
	b, err := fs.ReadFile(files, path.Join("jail.d", "vallum-"+name+".local"))
	if err != nil || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("no example jail %q: have %s", name, strings.Join(Jails(), ", "))
	}
	return b, nil
}

// mustRead reads a file that the embed directive guarantees is there.
func mustRead(name string) []byte {
	b, err := fs.ReadFile(files, name)
	if err != nil {
		panic(fmt.Sprintf("fail2ban: embedded %s: %v", name, err))
	}
	return b
}
