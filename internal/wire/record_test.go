package wire

import (
	"errors"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	r := Record{Epoch: NewEpoch(), Since: time.UnixMilli(1_700_000_000_123), Keeper: "hub"}
	got, err := DecodeRecord(EncodeRecord(r))
	if err != nil || got.Epoch != r.Epoch || !got.Since.Equal(r.Since) || got.Keeper != "hub" {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, r)
	}
	if a, b := NewEpoch(), NewEpoch(); a == b || len(a) != 16 {
		t.Errorf("NewEpoch gave %q and %q: want two different 16-digit epochs", a, b)
	}
	if RecordTopic("site1/blacklist") != "vallum/keeper/site1/blacklist" {
		t.Errorf("RecordTopic = %q", RecordTopic("site1/blacklist"))
	}
}

func TestRecordRefused(t *testing.T) {
	for _, bad := range []string{
		`{}`, `{"epoch":"0123456789abcdef"}`, `{"epoch":"xyz","since":1}`,
		`{"epoch":"0123456789abcdef0","since":1}`, `{"epoch":"0123456789abcdef","since":-5}`,
		"\xff", `[`, `{"epoch":"0123456789abcdef","since":1,"keeper":"` + string(make([]byte, 600)) + `"}`,
	} {
		if _, err := DecodeRecord([]byte(bad)); !errors.Is(err, ErrBadPayload) {
			t.Errorf("DecodeRecord(%.40q) = %v, want ErrBadPayload", bad, err)
		}
	}
	r, err := DecodeRecord([]byte(`{"epoch":"0123456789abcdef","since":1,"keeper":"a\u0000b"}`))
	if err != nil || r.Keeper != "a?b" {
		t.Errorf("a control byte in the keeper name: %+v, %v; want it shown as ?", r, err)
	}
}
