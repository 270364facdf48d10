package main

import "github.com/vallum/vallum/bridge"

// setNames lists the kernel sets of lists, for the metrics and /healthz.
func setNames(lists []bridge.List) []string {
	var s []string
	for _, l := range lists {
		s = append(s, l.Set4, l.Set6)
	}
	return s
}
