package main

import (
	"fmt"
	"time"
)

// soakResult is vallum's resident memory over a steady run.
type soakResult struct {
	startMB, endMB, maxMB float64 // mean of the first and last fifth, and the peak
	msgs                  int
}

// soak publishes add and del events at rate messages a second for d (and
// at most rate*d messages), over a fixed pool of addresses so that the set
// stays the same size, and samples vallum's RSS every second. Memory that
// is flat over the run has the same mean at its end as at its start.
func (s *subject) soak(a *addrs, topic string, d time.Duration, rate int) (soakResult, error) {
	pool := a.take(20000)
	var samples []float64
	every := time.Second / time.Duration(rate)
	start := time.Now()
	next, sample := start, start
	n := 0
	for max := int(d.Seconds()) * rate; n < max && time.Since(start) < d; n++ {
		action := "add"
		if n%3 == 2 {
			action = "del"
		}
		p := pool[(n*7919)%len(pool)]
		payload := fmt.Sprintf("%s timeout 600", p)
		if action == "del" {
			payload = p.String()
		}
		s.pub.Publish(topic+"/"+action, 1, false, payload)
		if now := time.Now(); now.After(sample) {
			rss, err := s.proc.RSS()
			if err != nil {
				return soakResult{}, err
			}
			samples = append(samples, mb(rss))
			sample = now.Add(time.Second)
		}
		next = next.Add(every)
		time.Sleep(time.Until(next))
	}
	if len(samples) < 5 {
		return soakResult{}, fmt.Errorf("soak: only %d RSS samples; run it longer", len(samples))
	}
	return summarize(samples, n), nil
}

func summarize(samples []float64, msgs int) soakResult {
	fifth := len(samples) / 5
	mean := func(xs []float64) float64 {
		t := 0.0
		for _, x := range xs {
			t += x
		}
		return t / float64(len(xs))
	}
	r := soakResult{startMB: mean(samples[:fifth]), endMB: mean(samples[len(samples)-fifth:]), msgs: msgs}
	for _, x := range samples {
		r.maxMB = max(r.maxMB, x)
	}
	return r
}
