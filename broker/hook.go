package broker

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/vallum/vallum/internal/wire"
)

// authHook authenticates clients and checks every way a client can make
// the broker publish, hold or deliver something: CONNECT (credentials,
// client id, will), PUBLISH (topic, payload, retain, quota), SUBSCRIBE and
// each delivery. Every refusal is logged as one line and counted.
type authHook struct {
	mqtt.HookBase
	srv    *mqtt.Server      // to answer a refused CONNECT
	users  map[string]User   // nil: no users file
	acc    map[string]access // by user name
	anon   *access           // nil: anonymous clients are refused
	wsAnon *access           // the same on WebSocket listeners; never admin
	ws     map[string]bool   // ids of WebSocket listeners
	pass   *passCache
	lists  []string // the broker's list roots
	lim    Limits
	ref    *refusals

	mu     sync.Mutex
	owners map[string]string // client id -> user, while its session lives
	ret    retainedUse
}

func (h *authHook) ID() string { return "vallum-auth" }

func (h *authHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnSubscribe,
		mqtt.OnRetainMessage, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// OnConnect runs before mochi's own authentication, so that a refusal can
// carry its real reason: credentials, then the will (mochi publishes it
// without asking OnACLCheck), then the client id.
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	a, ok := h.login(cl, pk)
	if !ok {
		return h.refuseConnect(cl, packets.ErrBadUsernameOrPassword)
	}
	if w := cl.Properties.Will; w.Flag != 0 {
		if reason, msg := h.checkPublish(cl, a, w.TopicName, w.Payload, w.Retain); reason != "" {
			h.ref.client(refWill, "will ("+reason+"): "+msg, cl, w.TopicName)
			return h.refuseConnect(cl, packets.ErrNotAuthorized)
		}
	}
	if owner, ok := h.claim(cl); !ok {
		h.ref.client(refClientID, "client id belongs to user "+owner, cl, "")
		return h.refuseConnect(cl, packets.ErrClientIdentifierNotValid)
	}
	return nil
}

// OnConnectAuthenticate only confirms what OnConnect decided (mochi
// refuses every client when no hook provides it).
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	_, ok := h.accessOf(cl)
	return ok
}

func (h *authHook) refuseConnect(cl *mqtt.Client, code packets.Code) error {
	if code == packets.ErrNotAuthorized && cl.Properties.ProtocolVersion < 5 {
		code = packets.ErrBadUsernameOrPassword // mochi sends 3.1.1's "not authorized" (5) for it, not for this
	}
	_ = h.srv.SendConnack(cl, code, false, nil)
	return code
}

// login checks the credentials and returns what the client may do.
func (h *authHook) login(cl *mqtt.Client, pk packets.Packet) (access, bool) {
	name := string(cl.Properties.Username)
	if h.users == nil || name == "" {
		a, ok := h.accessOf(cl)
		switch {
		case !ok && h.ws[cl.Net.Listener] && h.anon != nil:
			h.ref.client(refWSAnonymous, "anonymous WebSocket client: a browser is never trusted as a local admin; give credentials", cl, "")
		case !ok:
			h.ref.client(refAnonymous, "anonymous client", cl, "")
		}
		return a, ok
	}
	u, ok := h.users[name]
	if !ok || !h.pass.check(u, pk.Connect.Password) {
		h.ref.client(refBadLogin, "bad user name or password", cl, "")
		return access{}, false
	}
	return h.acc[name], true
}

func (h *authHook) accessOf(cl *mqtt.Client) (access, bool) {
	name := string(cl.Properties.Username)
	if h.users == nil || name == "" {
		anon := h.anon
		if h.ws[cl.Net.Listener] {
			anon = h.wsAnon
		}
		if anon == nil {
			return access{}, false
		}
		return *anon, true
	}
	a, ok := h.acc[name]
	return a, ok
}

// claim makes cl's user the owner of its client id, unless another user
// owns it: a live or persistent session is never handed to another login.
// The owner is the user of the session mochi holds (restored from the
// store after a restart) or the first user to connect with the id.
func (h *authHook) claim(cl *mqtt.Client) (string, bool) {
	user := string(cl.Properties.Username)
	h.mu.Lock()
	defer h.mu.Unlock()
	owner, known := h.owners[cl.ID]
	if !known {
		if old, ok := h.srv.Clients.Get(cl.ID); ok {
			owner, known = string(old.Properties.Username), true
		}
	}
	if known && owner != user {
		return owner, false
	}
	h.owners[cl.ID] = user
	return user, true
}

// OnDisconnect forgets the owner of a client id whose session ends with
// the connection; a persistent session keeps it until it expires.
func (h *authHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire {
		h.release(cl)
	}
}

func (h *authHook) OnClientExpired(cl *mqtt.Client) { h.release(cl) }

func (h *authHook) release(cl *mqtt.Client) {
	if cur, ok := h.srv.Clients.Get(cl.ID); ok && cur != cl {
		return // taken over by a newer connection of the same user
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.owners[cl.ID] == string(cl.Properties.Username) {
		delete(h.owners, cl.ID)
	}
}

// OnACLCheck checks a subscription, a publish's topic, and each delivery.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	a, ok := h.accessOf(cl)
	if !ok {
		return false
	}
	if msg := h.lim.topicProblem(topic); msg != "" {
		h.ref.client(refTopic, msg, cl, topic)
		return false
	}
	if write {
		if a.canPublish(topic, cl.ID) {
			return true
		}
		h.ref.client(refPublish, "may not publish on this topic", cl, topic)
		return false
	}
	if a.canSubscribe(topic, cl.ID) {
		return true
	}
	h.ref.client(refSubscribe, "may not read this topic", cl, topic)
	return false
}

// OnPublish checks what OnACLCheck cannot see: the topic a topic alias
// resolved to, the payload, the retain flag and the user's quota.
func (h *authHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline { // the keeper
		return pk, nil
	}
	a, ok := h.accessOf(cl)
	if !ok {
		return pk, packets.ErrRejectPacket
	}
	reason, msg := h.checkPublish(cl, a, pk.TopicName, pk.Payload, pk.FixedHeader.Retain)
	if reason == "" {
		return pk, nil
	}
	h.ref.client(reason, msg, cl, pk.TopicName)
	code := packets.ErrNotAuthorized
	switch reason {
	case refState:
		code = packets.ErrPayloadFormatInvalid
	case refRetain:
		code = packets.ErrRetainNotSupported
	case refRetainedQuota:
		code = packets.ErrQuotaExceeded
	case refTopic:
		code = packets.ErrTopicNameInvalid
	}
	return pk, refusePublish(cl, pk, code)
}

// refusePublish drops a refused PUBLISH. MQTT 5 has a negative PUBACK
// (PUBREC for QoS 2), sent here; MQTT 3.1.1 has none, so the message is
// acknowledged and dropped, as mochi's own quota refusals do (the refusal
// is in the log and the counters).
func refusePublish(cl *mqtt.Client, pk packets.Packet, code packets.Code) error {
	if pk.FixedHeader.Qos == 0 {
		return packets.ErrRejectPacket
	}
	if cl.Properties.ProtocolVersion < 5 {
		return packets.CodeSuccessIgnore
	}
	typ := packets.Puback
	if pk.FixedHeader.Qos == 2 {
		typ = packets.Pubrec
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: pk.PacketID, ReasonCode: code.Code})
	return packets.ErrRejectPacket
}

// checkPublish applies the publish rules to a PUBLISH or a will. It
// returns the reason of a refusal and a message, or "".
func (h *authHook) checkPublish(cl *mqtt.Client, a access, topic string, payload []byte, retain bool) (string, string) {
	if msg := h.lim.topicProblem(topic); msg != "" {
		return refTopic, msg
	}
	if !a.canPublish(topic, cl.ID) {
		return refPublish, "may not publish on this topic"
	}
	if a.admin { // trusted with every topic, the list's state included
		return "", ""
	}
	if root, ok := h.stateRoot(a, topic); ok {
		if msg := checkState(root, topic, payload); msg != "" {
			return refState, msg
		}
	} else if webBuilt && a.host && topic == wire.HostTopic(cl.ID) {
		// Checked as JSON of a status's size only: the hub's index reads
		// the fields it knows and ignores a status it cannot decode.
		if len(payload) > wire.MaxHostStatus || len(payload) > 0 && !json.Valid(payload) {
			return refState, "a host's status is a JSON object of at most 4 KiB"
		}
	} else if retain && !anyCovers(a.publish, topic) {
		return refRetain, "retained messages are accepted only on ROOT/ban/PREFIX (ban state) and a host's status"
	}
	if retain && len(payload) > 0 {
		if u, ok := h.ret.fits(string(cl.Properties.Username), topic, len(payload), h.lim); !ok {
			return refRetainedQuota, fmt.Sprintf("user holds %d retained messages of %d bytes (limits %d and %d)",
				u.n, u.bytes, h.lim.MaxRetained, h.lim.MaxRetainedBytes)
		}
	}
	return "", ""
}

// stateRoot returns the list root when topic is under ROOT/ban/.
func (h *authHook) stateRoot(a access, topic string) (string, bool) {
	for _, roots := range [][]string{h.lists, a.lists} {
		for _, r := range roots {
			if strings.HasPrefix(topic, r+"/"+wire.LevelState+"/") {
				return r, true
			}
		}
	}
	if a.lists == nil && len(h.lists) == 0 { // every topic may be a list
		if i := strings.LastIndex(topic, "/"+wire.LevelState+"/"); i > 0 {
			return topic[:i], true
		}
	}
	return "", false
}

// checkState accepts only ROOT/ban/PREFIX in its canonical form with an
// empty payload (an unban) or a valid state of at most 1 KiB.
func checkState(root, topic string, payload []byte) string {
	if err := wire.ValidRoot(root); err != nil {
		return err.Error()
	}
	t, err := wire.ParseTopic(root, topic)
	if err != nil {
		return err.Error()
	}
	if want := wire.StateTopic(root, t.Prefix); topic != want {
		return "state topic not in canonical form, want " + want
	}
	if len(payload) == 0 {
		return ""
	}
	if _, err := wire.DecodeState(payload); err != nil {
		return err.Error()
	}
	return ""
}

// OnSubscribe refuses the filters past the client's quota: they are made
// invalid, so that mochi answers them with a failure code.
func (h *authHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	have := cl.State.Subscriptions.Len()
	for i, f := range pk.Filters {
		if _, ok := cl.State.Subscriptions.Get(f.Filter); ok {
			continue // a new subscription replaces the old one
		}
		if have >= h.lim.MaxSubscriptions {
			h.ref.client(refSubscriptions, "the client has as many subscriptions as allowed", cl, f.Filter)
			pk.Filters[i].Filter = overQuota
			continue
		}
		have++
	}
	return pk
}

// overQuota is a filter mochi refuses as invalid ('#' not last).
const overQuota = "#/over-quota"

// OnRetainMessage counts every change of a retained message against the
// user who made it (the keeper and admins are not counted).
func (h *authHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, _ int64) {
	a, ok := h.accessOf(cl)
	counted := !cl.Net.Inline && ok && !a.admin
	h.ret.update(string(cl.Properties.Username), counted, pk.TopicName, len(pk.Payload))
}

// topicProblem says why topic (or filter) is too long or too deep, or "".
func (l Limits) topicProblem(topic string) string {
	if len(topic) > l.MaxTopicLength {
		return fmt.Sprintf("topic of %d bytes, more than %d", len(topic), l.MaxTopicLength)
	}
	if n := strings.Count(topic, "/") + 1; n > l.MaxTopicLevels {
		return fmt.Sprintf("topic of %d levels, more than %d", n, l.MaxTopicLevels)
	}
	return ""
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// retainedUse is who holds each retained message, and what each user
// holds: messages and payload bytes. It counts what was retained since the
// broker started; messages loaded from the store count for nobody.
type retainedUse struct {
	mu    sync.Mutex
	owner map[string]retainedBy // by topic
	use   map[string]*usage     // by user
}

type retainedBy struct {
	user string
	size int
}

type usage struct {
	n     int
	bytes int64
}

// fits reports whether user may retain size bytes on topic, replacing
// what is there, and what the user holds.
func (r *retainedUse) fits(user, topic string, size int, lim Limits) (usage, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var u usage
	if p := r.use[user]; p != nil {
		u = *p
	}
	after := u
	if old, ok := r.owner[topic]; ok && old.user == user {
		after.n, after.bytes = after.n-1, after.bytes-int64(old.size)
	}
	return u, after.n+1 <= lim.MaxRetained && after.bytes+int64(size) <= lim.MaxRetainedBytes
}

// update records that topic now holds size bytes (0: deleted) from user.
func (r *retainedUse) update(user string, counted bool, topic string, size int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owner == nil {
		r.owner, r.use = map[string]retainedBy{}, map[string]*usage{}
	}
	if old, ok := r.owner[topic]; ok {
		u := r.use[old.user]
		u.n, u.bytes = u.n-1, u.bytes-int64(old.size)
		if u.n == 0 {
			delete(r.use, old.user)
		}
		delete(r.owner, topic)
	}
	if !counted || size == 0 {
		return
	}
	r.owner[topic] = retainedBy{user, size}
	u := r.use[user]
	if u == nil {
		u = &usage{}
		r.use[user] = u
	}
	u.n, u.bytes = u.n+1, u.bytes+int64(size)
}
