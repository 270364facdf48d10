package main

import (
	"fmt"
	"slices"
	"time"
)

// single holds the one-address-per-message figures: vallum and the broker
// alone, with each of the two subscribers.
type single struct{ vallum, paho, mosquittoSub float64 }

// singleRounds measures one address per message for vallum and for the
// broker alone, in rounds that take the three in turn, so that the noise
// of a shared two-core machine falls on all three alike. Each figure is
// the median of its rounds, and the ratios compare medians of one run.
func (s *subject) singleRounds(dir string, a *addrs, n, rounds int, timeout time.Duration) (single, error) {
	var v, p, m []float64
	for i := range rounds {
		x, err := s.brokerRate(a, n, timeout)
		if err != nil {
			return single{}, fmt.Errorf("round %d, broker alone with paho: %w", i+1, err)
		}
		y, err := s.brokerRateSub(dir, a, n, timeout)
		if err != nil {
			return single{}, fmt.Errorf("round %d, broker alone with mosquitto_sub: %w", i+1, err)
		}
		z, err := s.throughput(a, "single", n, 1, timeout)
		if err != nil {
			return single{}, fmt.Errorf("round %d, vallum: %w", i+1, err)
		}
		p, m, v = append(p, x), append(m, y), append(v, z)
	}
	return single{vallum: median(v), paho: median(p), mosquittoSub: median(m)}, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
