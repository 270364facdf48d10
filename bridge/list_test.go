package bridge

import (
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	tests := []struct {
		in   string
		want List
		bad  bool
	}{
		{in: "blacklist", want: List{"blacklist", "blacklist", "blacklist6"}},
		{in: "site1/blacklist", want: List{"site1/blacklist", "blacklist", "blacklist6"}},
		{in: "bl=ban4,ban6", want: List{"bl", "ban4", "ban6"}},
		{in: "bl=ban4", want: List{"bl", "ban4", "ban46"}},
		{in: "bl=", bad: true},
		{in: "bl=a b", bad: true},
		{in: "bl/#", bad: true},
		{in: "x=" + strings.Repeat("s", 40), bad: true},
	}
	for _, tt := range tests {
		got, err := ParseList(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("ParseList(%q) error = %v, want error %v", tt.in, err, tt.bad)
		}
		if !tt.bad && got != tt.want {
			t.Errorf("ParseList(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
