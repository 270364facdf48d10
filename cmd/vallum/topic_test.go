package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A topic that names its sets, ROOT=SET4,SET6, is one list wherever it is
// given: a flag, VALLUM_TOPIC, a YAML list or a YAML scalar. Viper splits a
// string at commas, which made it two lists (sets bl46 and bl6).
func TestTopicWithSetsIsOneList(t *testing.T) {
	file := func(body string) string {
		f := filepath.Join(t.TempDir(), "vallum.yaml")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name string
		env  string
		args []string
		want []string
	}{
		{"flag", "", []string{"-t", "blacklist=bl4,bl6"}, []string{"blacklist=bl4,bl6"}},
		{"env", "blacklist=bl4,bl6", nil, []string{"blacklist=bl4,bl6"}},
		{"env, two topics", "blacklist=bl4,bl6 site1/other", nil, []string{"blacklist=bl4,bl6", "site1/other"}},
		{"yaml scalar", "", []string{"--config", file("topic: blacklist=bl4,bl6\n")}, []string{"blacklist=bl4,bl6"}},
		{"yaml list", "", []string{"--config", file("topic:\n  - blacklist=bl4,bl6\n  - other\n")}, []string{"blacklist=bl4,bl6", "other"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("VALLUM_TOPIC", tt.env)
			}
			c := loaded(t, tt.args...)
			if !reflect.DeepEqual(c.Topic, tt.want) {
				t.Fatalf("topics = %q, want %q", c.Topic, tt.want)
			}
			lists, err := c.lists()
			if err != nil {
				t.Fatal(err)
			}
			if l := lists[0]; l.Root != "blacklist" || l.Set4 != "bl4" || l.Set6 != "bl6" {
				t.Errorf("first list = %+v, want root blacklist with sets bl4 and bl6", l)
			}
			out, err := checkConfig(t, tt.args...)
			if err != nil {
				t.Fatalf("check-config: %v\n%s", err, out)
			}
			if !strings.Contains(out, "topic:\n    - blacklist=bl4,bl6\n") || strings.Contains(out, "- bl6") {
				t.Errorf("check-config does not show the one topic blacklist=bl4,bl6:\n%s", out)
			}
		})
	}
}
