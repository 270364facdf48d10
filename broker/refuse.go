package broker

import (
	"fmt"
	"log/slog"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/vallum/vallum/internal/quiet"
)

// Reasons the broker refuses something, as logged and counted
// (vallum_broker_refused_total{reason}).
const (
	refBadLogin      = "bad_login"       // unknown user or wrong password
	refAnonymous     = "anonymous"       // no credentials where they are required
	refWSAnonymous   = "ws_anonymous"    // a browser is never trusted as a loopback admin
	refWSHost        = "ws_host"         // WebSocket Host is not this listener (DNS rebinding)
	refClientID      = "client_id_taken" // the client id belongs to another user
	refPublish       = "acl_publish"     // the user may not publish there
	refSubscribe     = "acl_subscribe"   // the user may not read there
	refWill          = "will"            // the will breaks a publish rule
	refState         = "bad_state"       // not a canonical ROOT/ban/PREFIX topic or a valid state payload
	refRetain        = "retain"          // retained outside the state topics
	refRetainedQuota = "retained_quota"  // the user's retained messages or bytes are used up
	refSubscriptions = "subscriptions"   // the client's subscriptions are used up
	refTopic         = "topic_size"      // topic too long or too deep
	refConnectTime   = "connect_timeout" // no CONNECT within the deadline
	refConnectSize   = "connect_size"    // CONNECT larger than allowed before login
	refNotConnect    = "not_connect"     // the first packet is not a CONNECT
	refConnsPerAddr  = "conns_per_addr"  // too many connections from one address
	refWriteStall    = "write_stall"     // the client read nothing for write_stall
)

// refusals logs and counts what the broker refuses: one readable line per
// refusal (who, what, why), at most quiet.Burst lines per reason and
// window, then one line saying how many more were not logged.
type refusals struct {
	log   *slog.Logger
	lines quiet.Windows
	mu    sync.Mutex
	n     map[string]int64 // total per reason
	// tap, when set, sees every refusal (the web view's live stream);
	// set before the broker serves.
	tap func(reason, msg, user, topic string)
}

func newRefusals(log *slog.Logger) *refusals {
	return &refusals{log: log, n: map[string]int64{}}
}

// refuse counts one refusal and logs it unless the reason is over its
// burst. args are slog key-value pairs: user, client, remote, topic...
func (r *refusals) refuse(reason, msg string, args ...any) {
	r.mu.Lock()
	r.n[reason]++
	r.mu.Unlock()
	if webBuilt && r.tap != nil {
		r.tap(reason, msg, argOf(args, "user"), argOf(args, "topic"))
	}
	show, left := r.lines.Allow(reason)
	if left > 0 {
		r.log.Warn(fmt.Sprintf("refused %d more (%s) in the last %v without logging each", left, reason, quiet.Every), "reason", reason)
	}
	if show {
		r.log.Warn("refused: "+msg, append([]any{"reason", reason}, args...)...)
	}
}

// counts returns the refusals so far, per reason.
func (r *refusals) counts() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.n))
	for k, v := range r.n {
		out[k] = v
	}
	return out
}

// client refuses what a client asked for, on topic ("" for none).
func (r *refusals) client(reason, msg string, cl *mqtt.Client, topic string) {
	r.refuse(reason, msg, "user", string(cl.Properties.Username), "client", cl.ID, "remote", cl.Net.Remote, "topic", clip(topic))
}

// argOf returns the string value of key in slog key-value pairs, or "".
func argOf(args []any, key string) string {
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == key {
			s, _ := args[i+1].(string)
			return s
		}
	}
	return ""
}
