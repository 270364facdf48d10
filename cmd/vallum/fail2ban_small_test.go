//go:build vallum_small && (mips || mipsle)

package main

import (
	"strings"
	"testing"
)

// The MIPS router builds have no action files; the command says where
// they are rather than failing as an unknown command.
func TestFail2banActionNotHere(t *testing.T) {
	err := newFail2banCmd().RunE(nil, nil)
	if err == nil || !strings.Contains(err.Error(), "fail2ban/action.d/vallum.conf") {
		t.Errorf("fail2ban-action = %v, want an error naming where the action file is", err)
	}
}
