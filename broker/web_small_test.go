//go:build vallum_noweb

package broker

import (
	"strings"
	"testing"
)

// TestWebNotBuilt: a router build refuses --web (web: in the config file)
// at start, saying why, rather than ignore it.
func TestWebNotBuilt(t *testing.T) {
	users := writeUsers(t, fleetUsers, "edge1", "edge2", "rep", "other", "admin")
	_, err := New(Options{Listeners: []Listener{local(KindTCP)}, UsersFile: users, Lists: []string{"blacklist"}, Web: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "not in the router builds") {
		t.Errorf("New with Web in a router build: %v, want refused", err)
	}
}
