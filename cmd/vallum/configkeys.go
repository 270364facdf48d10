package main

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// unknownKeys names every key of the config file b that vallum does not
// know, with its line and the key meant when it is a near miss
// (max-payload for max_payload, topics for topic). viper
// would say only "” has invalid keys: ...", naming neither file nor line.
func unknownKeys(file string, b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil // empty, or the map decoder's error says it
	}
	known := configKeys()
	var errs []error
	m := doc.Content[0].Content
	for i := 0; i+1 < len(m); i += 2 {
		k := m[i]
		if known[strings.ToLower(k.Value)] { // viper's keys are case-insensitive
			continue
		}
		e := fmt.Sprintf("config file %s, line %d: unknown key %q", file, k.Line, k.Value)
		if s := nearKey(k.Value, known); s != "" {
			e += fmt.Sprintf(" (did you mean %s?)", s)
		} else {
			e += " (keys are the long flag names with _ for -; contrib/vallum.yaml lists them all)"
		}
		errs = append(errs, errors.New(e))
	}
	return errors.Join(errs...)
}

// nearKey is the known key k probably means, or "".
func nearKey(k string, known map[string]bool) string {
	n := strings.ToLower(strings.ReplaceAll(k, "-", "_"))
	for _, c := range []string{n, strings.TrimSuffix(n, "s"), n + "s", strings.ReplaceAll(n, "_", "")} {
		if known[c] {
			return c
		}
	}
	return ""
}
