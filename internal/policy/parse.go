package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parse reads the --policy settings: each is ROOT:KEY=VALUE[,KEY=VALUE...],
// and several may name one list (later keys win). Keys:
//
//	escalate=on|off       escalation with DefaultEscalation's values
//	steps=15m/30m         the first bans' times (turns escalation on, as the next four do)
//	each=1h               past the steps: this times the number of bans
//	factor=2              past the steps: the last step times this per ban (instead of each)
//	max=7d                the longest escalated ban
//	remember=30d          how long an address's history is kept after its last ban
//	quorum=2              distinct reporters whose reports make a global ban
//	window=1h             within this long (default DefaultWindow)
//	limit=1000/1h         reports of one reporter past which its reports are held
//	                      (default DefaultLimit; off: none)
//
// Durations are Go durations (90m, 1h) or days (7d).
func Parse(specs []string) (map[string]List, error) {
	out := map[string]List{}
	for _, s := range specs {
		root, kvs, ok := strings.Cut(s, ":")
		if !ok || root == "" || kvs == "" {
			return nil, fmt.Errorf("policy %q: want LIST:KEY=VALUE[,KEY=VALUE...]", s)
		}
		l := out[root]
		for _, kv := range strings.Split(kvs, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			if err := l.set(k, v); err != nil {
				return nil, fmt.Errorf("policy %q: %s: %w", s, k, err)
			}
		}
		out[root] = l
	}
	return out, nil
}

// set applies one KEY=VALUE.
func (l *List) set(k, v string) error {
	var err error
	esc := func() *Escalation {
		if l.Escalate == nil {
			e := DefaultEscalation
			e.Steps = append([]time.Duration(nil), e.Steps...)
			l.Escalate = &e
		}
		return l.Escalate
	}
	switch k {
	case "escalate":
		switch v {
		case "on":
			esc()
		case "off":
			l.Escalate = nil
		default:
			err = fmt.Errorf("%q: want on or off", v)
		}
	case "steps":
		e := esc()
		e.Steps = nil
		for _, p := range strings.Split(v, "/") {
			d, perr := duration(p)
			if perr != nil || d == 0 {
				return fmt.Errorf("%q: want durations separated by /, such as 15m/30m", v)
			}
			e.Steps = append(e.Steps, d)
		}
	case "each":
		esc().Each, err = duration(v)
	case "factor":
		e := esc()
		if e.Factor, err = strconv.ParseFloat(v, 64); err == nil && (e.Factor < 1 || e.Factor > 100) {
			err = fmt.Errorf("%q: want a number from 1 to 100", v)
		}
	case "max":
		esc().Max, err = duration(v)
	case "remember":
		esc().Remember, err = duration(v)
	case "quorum":
		l.Quorum.N, err = count(v)
	case "window":
		l.Quorum.Window, err = duration(v)
	case "limit":
		if v == "off" {
			l.Limit = Limit{N: -1}
			return nil
		}
		n, per, ok := strings.Cut(v, "/")
		if l.Limit.N, err = count(n); err == nil {
			l.Limit.Per, err = duration(per)
		}
		if !ok || err != nil || l.Limit.Per == 0 || l.Limit.N == 0 {
			err = fmt.Errorf("%q: want COUNT/DURATION, such as 1000/1h, or off", v)
		}
	default:
		err = fmt.Errorf("unknown key (escalate, steps, each, factor, max, remember, quorum, window, limit)")
	}
	return err
}

// duration reads a Go duration or a number of days ("7d").
func duration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n < 100000 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a duration such as 90m, 1h or 7d", s)
	}
	return d, nil
}

func count(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1000000 {
		return 0, fmt.Errorf("%q: want a whole number from 0 to 1000000", s)
	}
	return n, nil
}
