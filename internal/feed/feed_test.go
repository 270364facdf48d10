package feed

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vallum/vallum/internal/wire"
)

// spamhausFile is drop_v4.json's shape: one object a line, metadata last.
const spamhausFile = `{"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}
{"cidr":"2.56.192.0/22","sblid":"SBL459831","rir":"ripencc"}
{"cidr":"2001:db8:1::/48","sblid":"SBL1","rir":"arin"}
{"type":"metadata","timestamp":1764500000,"size":200,"records":3,"copyright":"(c) 2025 The Spamhaus Project SLU","terms":"https://www.spamhaus.org/drop/terms/"}
`

const dynfwFile = `# For the terms of use see https://view.sentinel.turris.cz/greylist-data/LICENSE.txt
Address,Tags
1.0.133.26,telnet
"1.1.132.42","ssh,telnet"
2001:db8::5,http
`

const netsetFile = `#
# firehol_level1
#
# Maintainer      : FireHOL
#
0.0.0.0/8
1.10.16.0/20
5.134.128.0/19
185.0.0.1
`

func prefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// refusedLines is the line numbers of a result's refusals.
func refusedLines(r Result) []int {
	var n []int
	for _, e := range r.Refused {
		n = append(n, e.N)
	}
	return n
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		format  Format
		want    Format
		got     []netip.Prefix
		refused []int
	}{
		{"netset auto", netsetFile, Auto, Plain, prefixes("0.0.0.0/8", "1.10.16.0/20", "5.134.128.0/19", "185.0.0.1/32"), nil},
		{"netset strict", netsetFile + "1.2.3.4 extra\n", Netset, Netset, prefixes("0.0.0.0/8", "1.10.16.0/20", "5.134.128.0/19", "185.0.0.1/32"), []int{10}},
		{"plain with comments", "1.10.16.0/20 ; SBL256894\n2.2.2.2 # x\n\n  3.3.3.3  \n; only\n", Plain, Plain, prefixes("1.10.16.0/20", "2.2.2.2/32", "3.3.3.3/32"), nil},
		{"plain canonical", "10.1.2.3/8\n::ffff:1.2.3.4\n10.0.0.0/8\n", Plain, Plain, prefixes("10.0.0.0/8", "1.2.3.4/32"), nil},
		{"spamhaus auto", spamhausFile, Auto, Spamhaus, prefixes("1.10.16.0/20", "2.56.192.0/22", "2001:db8:1::/48"), nil},
		{"dynfw auto", dynfwFile, Auto, DynFW, prefixes("1.0.133.26/32", "1.1.132.42/32", "2001:db8::5/128"), nil},
		{"dynfw without header", "1.2.3.4,ssh\n", DynFW, DynFW, prefixes("1.2.3.4/32"), nil},
		{"dynfw bad rows", "Address,Tags\nAddress,x\nnot-ip,ssh\n,ssh\n5.5.5.5\n", DynFW, DynFW, prefixes("5.5.5.5/32"), []int{2, 3, 4}},
		{"garbage lines refused alone", "1.1.1.1\nhello\n1.1.1.300\n1.2.3.4/33\n2.2.2.2\n", Plain, Plain, prefixes("1.1.1.1/32", "2.2.2.2/32"), []int{2, 3, 4}},
		{"NUL and non-UTF-8", "1.1.1.1\n\x00\x00\n\xff\xfe1.2.3.4\n1.2.3.4\x00\n2.2.2.2\n", Plain, Plain, prefixes("1.1.1.1/32", "2.2.2.2/32"), []int{2, 3, 4}},
		{"no final newline, CRLF", "1.1.1.1\r\n2.2.2.2", Plain, Plain, prefixes("1.1.1.1/32", "2.2.2.2/32"), nil},
		{"empty", "", Auto, Plain, nil, nil},
		{"only comments", "# a\n# b\n", Auto, Plain, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(strings.NewReader(tc.in), tc.format)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if r.Format != tc.want {
				t.Errorf("format %s, want %s", r.Format, tc.want)
			}
			if d := cmp.Diff(tc.got, r.Prefixes, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
				t.Errorf("prefixes (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.refused, refusedLines(r)); d != "" {
				t.Errorf("refused lines (-want +got):\n%s\n%v", d, r.Refused)
			}
			for _, e := range r.Refused {
				if !errors.Is(e, wire.ErrBadPayload) {
					t.Errorf("refusal %v is not ErrBadPayload", e)
				}
				if strings.ContainsAny(e.Text, "\x00\xff") || len(e.Text) > 70 {
					t.Errorf("refusal quotes %q: want it clipped and printable", e.Text)
				}
			}
		})
	}
}

func TestParseSpamhausRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		err     error
		refused []int
	}{
		{"no metadata: cut short", strings.Join(strings.Split(spamhausFile, "\n")[:2], "\n"), ErrTruncated, nil},
		{"records differ", strings.Replace(spamhausFile, `"records":3`, `"records":4`, 1), ErrTruncated, nil},
		{"entry after metadata", spamhausFile + `{"cidr":"9.9.9.0/24"}` + "\n", ErrTruncated, []int{5}},
		{"bad lines alone", `{"cidr":"1.1.1.0/24"}
{"cidr":"nope"}
{"sblid":"SBL1"}
not json
{"cidr":5}
{"type":"metadata","records":5}
`, nil, []int{2, 3, 4, 5}},
		{"JSON bomb: deep nesting", `{"cidr":"1.1.1.0/24"}
{"x":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `,"cidr":"2.2.2.0/24"}
{"type":"metadata","records":2}
`, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(strings.NewReader(tc.in), Spamhaus)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse: %v, want %v", err, tc.err)
			}
			if d := cmp.Diff(tc.refused, refusedLines(r)); d != "" {
				t.Errorf("refused lines (-want +got):\n%s\n%v", d, r.Refused)
			}
		})
	}
}

// TestParseHugeLine: a 10 MB line (with no newline, then with one) is
// refused alone, and the lines around it still count; the parser never
// keeps more than MaxLine of it.
func TestParseHugeLine(t *testing.T) {
	huge := strings.Repeat("9", 10<<20)
	for _, f := range []Format{Plain, Netset, Spamhaus, DynFW} {
		t.Run(string(f), func(t *testing.T) {
			in := "1.1.1.1\n" + huge + "\n2.2.2.2\n" + huge
			if f == Spamhaus {
				in = `{"cidr":"1.1.1.1"}` + "\n" + huge + "\n" + `{"cidr":"2.2.2.2"}` + "\n" + `{"type":"metadata","records":2}` + "\n" + huge
			}
			r, err := Parse(strings.NewReader(in), f)
			if f == Spamhaus {
				if !errors.Is(err, ErrTruncated) { // the metadata line is not last
					t.Fatalf("Parse: %v, want ErrTruncated", err)
				}
			} else if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(r.Prefixes) != 2 {
				t.Errorf("prefixes %v, want 1.1.1.1 and 2.2.2.2", r.Prefixes)
			}
			if len(r.Refused) < 2 || !strings.Contains(r.Refused[0].Error(), "longer than") {
				t.Errorf("refused %v, want the two huge lines", r.Refused)
			}
		})
	}
}

func TestParseTooMany(t *testing.T) {
	defer func(n int) { maxEntries = n }(maxEntries)
	maxEntries = 100
	var b strings.Builder
	for i := range 101 {
		fmt.Fprintf(&b, "10.0.%d.%d\n", i/256, i%256)
	}
	if _, err := Parse(strings.NewReader(b.String()), Auto); !errors.Is(err, ErrTooMany) {
		t.Fatalf("Parse of 101 entries with a bound of 100: %v, want ErrTooMany", err)
	}
}

func TestParseUnknownFormat(t *testing.T) {
	if _, err := Parse(strings.NewReader("1.1.1.1\n"), "xml"); !errors.Is(err, ErrUnknownFmt) {
		t.Fatalf("Parse format xml: %v, want ErrUnknownFmt", err)
	}
}

// errAfter reads s, then fails: a feed cut by the network.
type errAfter struct{ r io.Reader }

func (e errAfter) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func TestParseReadError(t *testing.T) {
	_, err := Parse(errAfter{strings.NewReader("1.1.1.1\n2.2.2.2\n")}, Plain)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Parse of a feed cut by a read error: %v, want the error", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{netsetFile, spamhausFile, dynfwFile, "1.1.1.1\n\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, _ := Parse(strings.NewReader(s), Auto)
		seen := map[netip.Prefix]bool{}
		for _, p := range r.Prefixes {
			if p != p.Masked() || p.Addr().Is4In6() || seen[p] {
				t.Fatalf("Parse(%q) kept %v: not canonical or repeated", s, p)
			}
			seen[p] = true
		}
		if len(r.Lines) != len(r.Prefixes) {
			t.Fatalf("Parse(%q): %d lines for %d prefixes", s, len(r.Lines), len(r.Prefixes))
		}
	})
}
