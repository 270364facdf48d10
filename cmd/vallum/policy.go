//go:build !(vallum_small && (mips || mipsle))

package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/keeper"
	"github.com/vallum/vallum/internal/policy"
)

// policyFlag adds --policy, the keeper's policy per list (the hub's
// keeper, `vallum keeper`, `--keeper`).
func policyFlag(f *pflag.FlagSet) {
	f.StringArray("policy", nil, "the keeper's policy of a list, repeatable: LIST:KEY=VALUE[,KEY=VALUE...], keys escalate=on, steps=15m/30m, each=1h, factor, max=7d, remember=30d, quorum=2, window=1h, limit=1000/1h (the default for reports; off) (README, Policy)")
}

// keeperPolicy reads --policy; history is the file of the escalation's
// history ("": none, kept in memory only).
func (c config) keeperPolicy(history string) (keeper.Policy, error) {
	lists, err := policy.Parse(c.Policy)
	if err != nil {
		return keeper.Policy{}, fmt.Errorf("--%w", err)
	}
	p := keeper.Policy{Lists: lists}
	if len(lists) > 0 && c.DataDir != "" {
		p.History = history
	}
	return p, nil
}

// hubPolicy is the policy of the embedded broker's keeper.
func (c config) hubPolicy() (keeper.Policy, error) {
	return c.keeperPolicy(datadir.Dir(c.DataDir).BrokerHistory())
}
