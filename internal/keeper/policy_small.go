//go:build vallum_small && (mips || mipsle)

package keeper

import (
	"errors"
	"time"

	"github.com/vallum/vallum/internal/policy"
	"github.com/vallum/vallum/internal/wire"
)

// The keeper's policy (escalation, quorum, reporter limits) is not in the
// 32-bit MIPS router builds: it does not fit under the 10 MB goal. A hub
// there keeps its lists as before; a policy given is refused at start,
// and a report is dropped with a warning.

type polState struct{}

func (k *Keeper) openPolicy() error {
	if len(k.o.Policy.Lists) > 0 {
		return errors.New("keeper: the policy (--policy) is not in the MIPS router builds")
	}
	return nil
}

func (k *Keeper) closePolicy() error { return nil }

func (k *Keeper) escalateLocked(_ int, _ string, asked wire.Timeout, _ time.Time) (*policy.History, wire.Timeout) {
	return nil, asked
}

func (k *Keeper) rememberLocked(string, *policy.History) {}

func (k *Keeper) escalateStateLocked(int, string, wire.State) []retain { return nil }

func (k *Keeper) report(i int, by string, _ []byte) {
	k.quiet.warn("report", "report dropped: the keeper's policy is not in this build", "list", k.lists[i].root, "reporter", by)
}

func (k *Keeper) sweepPendingLocked(time.Time) []retain { return nil }

func (k *Keeper) readPending(int, string, []byte) {}

// Held returns nothing: no report is held in this build.
func (k *Keeper) Held() []Held { return nil }
