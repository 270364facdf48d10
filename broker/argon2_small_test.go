//go:build vallum_small

package broker

import (
	"strings"
	"testing"
)

// A router build refuses an argon2id hash when it loads the users file, with
// what to do, rather than refusing every login of that user later.
func TestArgon2idRefusedInRouterBuilds(t *testing.T) {
	const h = "$argon2id$v=19$m=1024,t=2,p=1$c29tZXNhbHQ$L+Zv6RUcZHNM8MRv8NxKmDbA+W2z7wbsR1KkBvCYVuU"
	err := checkUser(User{Name: "edge1", Password: h, Role: RoleHost})
	if err == nil || !strings.Contains(err.Error(), "vallum broker add-user") {
		t.Errorf("checkUser(argon2id) = %v, want a refusal that says to set the password again with add-user", err)
	}
	if verifyPassword(h, []byte("secret")) {
		t.Error("verifyPassword(argon2id) = true in a router build")
	}
}
