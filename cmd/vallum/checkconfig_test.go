package main

import (
	"bytes"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// check-config's YAML, written by hand, reads back as the same settings,
// whatever the strings hold.
func TestWriteYAMLRoundTrip(t *testing.T) {
	tricky := []string{"", "plain", "inet vallum", "a: b", "a:", "#x", "x #y", "- x", "true", "No", "null",
		"~", "1883", "1e3", " lead", "trail ", "fd00::/8", "127.0.0.1:1883", `q"uote`, "back\\slash",
		"tab\there", "new\nline", "ünï", "[x]", "{x}", "*x", "&x", "!x", "%x", "@x", "'x'", "x,y"}
	for _, s := range tricky {
		c := config{Host: s, Topic: []string{s, "blacklist"}, Allow: []string{}, Listen: []string{}, BrokerLimit: []string{}, WSHost: []string{}, Port: 1883, TLS: true, MaxElem: 7}
		var b bytes.Buffer
		writeYAML(&b, c)
		var got config
		if err := yaml.Unmarshal(b.Bytes(), &got); err != nil {
			t.Errorf("%q: output does not parse: %v\n%s", s, err, b.String())
			continue
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("%q: read back as %+v, want %+v\n%s", s, got, c, b.String())
		}
	}
}
