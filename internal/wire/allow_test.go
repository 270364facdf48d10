package wire

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestAllowRoundTrip(t *testing.T) {
	a := Allow{At: time.UnixMilli(1_700_000_000_123), Comment: "office", Origin: "admin1"}
	got, err := DecodeAllow(EncodeAllow(a))
	if err != nil || !got.At.Equal(a.At) || got.Comment != a.Comment || got.Origin != a.Origin {
		t.Fatalf("DecodeAllow(EncodeAllow(%+v)) = %+v, %v", a, got, err)
	}
	got, err = DecodeAllow([]byte(`{"at":1,"comment":"a\u0000b\nc"}`))
	if err != nil || got.Comment != "a?b?c" {
		t.Errorf("control bytes in a comment: %+v, %v; want them shown as ?", got, err)
	}
	for _, bad := range []string{`{}`, `{"at":0}`, `{"at":-1}`, `[`, "\xff", `{"at":1,"comment":"` + string(make([]byte, 1100)) + `"}`} {
		if _, err := DecodeAllow([]byte(bad)); !errors.Is(err, ErrBadPayload) {
			t.Errorf("DecodeAllow(%.40q) = %v, want ErrBadPayload", bad, err)
		}
	}
}

func TestAllowTopic(t *testing.T) {
	for _, tc := range []struct {
		name, topic string
		want        string // the prefix; "" when refused
	}{
		{"address", "vallum/allow/198.51.100.7", "198.51.100.7/32"},
		{"network", "vallum/allow/198.51.100.0/24", "198.51.100.0/24"},
		{"ipv6", "vallum/allow/2001:db8::/48", "2001:db8::/48"},
		{"explicit /32", "vallum/allow/198.51.100.7/32", ""},
		{"host bits", "vallum/allow/198.51.100.1/24", ""},
		{"upper case", "vallum/allow/2001:DB8::/48", ""},
		{"v4-mapped", "vallum/allow/::ffff:198.51.100.7", ""},
		{"leading zero", "vallum/allow/198.051.100.7", ""},
		{"not an address", "vallum/allow/office", ""},
		{"empty", "vallum/allow/", ""},
		{"deeper", "vallum/allow/198.51.100.0/24/x", ""},
		{"other namespace", "vallum/keeper/198.51.100.7", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseAllowTopic(tc.topic)
			if tc.want == "" {
				if !errors.Is(err, ErrBadTopic) {
					t.Errorf("ParseAllowTopic(%q) = %v, %v; want ErrBadTopic", tc.topic, p, err)
				}
				return
			}
			if err != nil || p != netip.MustParsePrefix(tc.want) {
				t.Errorf("ParseAllowTopic(%q) = %v, %v; want %s", tc.topic, p, err, tc.want)
			}
			if AllowTopic(p) != tc.topic {
				t.Errorf("AllowTopic(%v) = %q, want %q", p, AllowTopic(p), tc.topic)
			}
		})
	}
}
