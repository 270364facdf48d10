package dryrun

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/wire"
)

var _ bridge.Backend = (*Backend)(nil)

// TestDryrunLogsAndHoldsNothing: every op is one log line, and nothing is
// ever listed, so a sync removes nothing either.
func TestDryrunLogsAndHoldsNothing(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	d, ctx := New(log), context.Background()
	info, err := d.Ensure(ctx, bridge.SetSpec{Name: "bl", Family: bridge.IPv4, Create: true})
	if err != nil || info.Name != "bl" || !info.Comments {
		t.Fatalf("Ensure = %+v, %v", info, err)
	}
	ops := []bridge.Op{
		{Action: bridge.Add, Prefix: netip.MustParsePrefix("192.0.2.7/32"), Timeout: 600},
		{Action: bridge.Del, Prefix: netip.MustParsePrefix("198.51.100.0/24"), Timeout: wire.DefaultTimeout},
	}
	if err := d.Apply(ctx, "bl", ops); err != nil {
		t.Fatal(err)
	}
	want := `level=INFO msg="dryrun: ensure set" set=bl family=inet create=true
level=INFO msg=dryrun set=bl op=add prefix=192.0.2.7/32 timeout=600
level=INFO msg=dryrun set=bl op=del prefix=198.51.100.0/24 timeout=-1
`
	if got := buf.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
	if l, err := d.List(ctx, "bl"); err != nil || len(l) != 0 {
		t.Errorf("List = %v, %v, want nothing", l, err)
	}
}
