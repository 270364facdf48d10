package broker

import (
	"bytes"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// syncFilter is where hosts publish the sync markers their bridges send to
// themselves.
const syncFilter = "vallum/sync/#"

// access is what one kind of client may do. It denies whatever no rule
// allows: unlike mochi's ledger, nothing is allowed by default.
type access struct {
	admin, host, reporter bool
	lists                 []string // roots the roles apply to; nil: every topic
	publish, subscribe    []string // extra topic filters
}

func roleAccess(role string, lists []string) access {
	return access{
		admin:    role == RoleAdmin,
		host:     role == RoleHost,
		reporter: role == RoleReporter,
		lists:    lists,
	}
}

func (a access) canPublish(topic string) bool {
	if a.admin || anyCovers(a.publish, topic) {
		return true
	}
	if a.host && covers(syncFilter, topic) {
		return true
	}
	if !a.reporter || strings.HasPrefix(topic, "$") {
		return false
	}
	if a.lists == nil { // every topic may be a list root
		return !covers("vallum/#", topic)
	}
	for _, r := range a.lists {
		if topic == r || topic == r+"/add" || topic == r+"/del" || covers(r+"/ban/#", topic) && topic != r+"/ban" {
			return true
		}
	}
	return false
}

// canSubscribe reports whether a may subscribe to filter; mochi asks the
// same for every message it delivers, with the topic as the filter.
func (a access) canSubscribe(filter string) bool {
	if a.admin || anyCovers(a.subscribe, filter) {
		return true
	}
	if strings.HasPrefix(filter, "$") {
		return false
	}
	if a.host && covers(syncFilter, filter) { // its bridge's own sync markers
		return true
	}
	if a.lists == nil {
		return a.host || a.reporter && statesOnly(filter)
	}
	for _, r := range a.lists {
		if a.host && covers(r+"/#", filter) || a.reporter && covers(r+"/ban/#", filter) {
			return true
		}
	}
	return false
}

// statesOnly reports whether filter reaches only ban state topics of some
// list: a level "ban" with at least one level after it.
func statesOnly(filter string) bool {
	lv := strings.Split(filter, "/")
	for i := 1; i < len(lv)-1; i++ {
		if lv[i] == "ban" {
			return !strings.Contains(strings.Join(lv[:i], "/"), "#")
		}
	}
	return false
}

func anyCovers(allowed []string, f string) bool {
	for _, a := range allowed {
		if covers(a, f) {
			return true
		}
	}
	return false
}

// covers reports whether every topic that f matches is matched by the
// filter allowed. f may be a topic or a filter: a wildcard in f is covered
// only by a wildcard in allowed.
func covers(allowed, f string) bool {
	a, b := strings.Split(allowed, "/"), strings.Split(f, "/")
	for i, lv := range a {
		if lv == "#" {
			return true
		}
		if i >= len(b) {
			return false
		}
		if lv == "+" {
			if b[i] == "#" {
				return false
			}
			continue
		}
		if lv != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

func validFilter(f string) bool {
	if f == "" {
		return false
	}
	lv := strings.Split(f, "/")
	for i, l := range lv {
		if (l == "#" && i != len(lv)-1) || (l != "#" && l != "+" && strings.ContainsAny(l, "#+")) {
			return false
		}
	}
	return true
}

// authHook authenticates clients and checks every publish, subscription
// and delivery against their access.
type authHook struct {
	mqtt.HookBase
	users map[string]User   // nil: no users file
	acc   map[string]access // by user name
	anon  *access           // nil: anonymous clients are refused
	pass  *passCache
}

func (h *authHook) ID() string { return "vallum-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	name := string(cl.Properties.Username)
	if h.users == nil || name == "" {
		if h.anon == nil {
			h.Log.Info("refused anonymous client", "client", cl.ID, "remote", cl.Net.Remote)
		}
		return h.anon != nil
	}
	u, ok := h.users[name]
	if !ok || !h.pass.check(u, pk.Connect.Password) {
		h.Log.Warn("refused client: bad user name or password", "client", cl.ID, "user", name, "remote", cl.Net.Remote)
		return false
	}
	return true
}

func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	a, ok := h.accessOf(cl)
	if !ok {
		return false
	}
	if write {
		return a.canPublish(topic)
	}
	return a.canSubscribe(topic)
}

func (h *authHook) accessOf(cl *mqtt.Client) (access, bool) {
	name := string(cl.Properties.Username)
	if h.users == nil || name == "" {
		if h.anon == nil {
			return access{}, false
		}
		return *h.anon, true
	}
	a, ok := h.acc[name]
	return a, ok
}
