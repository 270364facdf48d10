//go:build !vallum_small

package main

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// TestListOutputs: each -o format of the same bans.
func TestListOutputs(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	bans := []ban{
		{mustPrefix("192.0.2.1/32"), stateOf(now, now.Add(time.Hour), "sshd, \"x\"", "h1")},
		{mustPrefix("2001:db8::/48"), wire.State{At: now, Count: 3}},
		{mustPrefix("192.0.2.9/32"), stateOf(now, now.Add(-time.Second), "gone", "")},
	}
	for format, want := range map[string]string{
		"json": `{"prefix":"192.0.2.1","at":1800000000000,"expires":1800003600,"reason":"sshd, \"x\"","origin":"h1"}
{"prefix":"2001:db8::/48","at":1800000000000,"count":3}
`,
		"csv":   "Address,Tags\n192.0.2.1,\"sshd, \"\"x\"\"\"\n2001:db8::/48,\n",
		"plain": "#\n# vallum list, 2027-01-15T08:00:00Z\n# 2 entries\n#\n192.0.2.1\n2001:db8::/48\n",
	} {
		var b bytes.Buffer
		if err := printList(&b, format, bans, now); err != nil {
			t.Fatal(err)
		}
		if b.String() != want {
			t.Errorf("-o %s:\n%s\nwant:\n%s", format, b.String(), want)
		}
	}
	if err := printList(nil, "yaml", bans, now); err == nil {
		t.Error("-o yaml: no error")
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func stateOf(at, exp time.Time, reason, origin string) wire.State {
	return wire.State{At: at, Expires: exp, Reason: reason, Origin: origin}
}
