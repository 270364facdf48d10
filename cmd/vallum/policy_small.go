//go:build vallum_small && (mips || mipsle)

package main

import (
	"errors"

	"github.com/spf13/pflag"

	"github.com/vallum/vallum/internal/keeper"
)

// The keeper's policy is not in the 32-bit MIPS router builds (see
// internal/keeper/policy_small.go): --policy is refused at start.

func policyFlag(f *pflag.FlagSet) { f.StringArray("policy", nil, "not in this build") }

func (c config) hubPolicy() (keeper.Policy, error) {
	if len(c.Policy) > 0 {
		return keeper.Policy{}, errors.New("--policy: the keeper's policy is not in the MIPS router builds")
	}
	return keeper.Policy{}, nil
}
