package main

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// brokerRate is the broker's own rate for one address per message at
// QoS 1: the same publisher, and a paho subscriber in this process that
// only counts, in place of a bridge. It is the ceiling for vallum's
// one-per-message figure.
func (s *subject) brokerRate(a *addrs, n int, timeout time.Duration) (float64, error) {
	var got atomic.Int64
	all := make(chan struct{})
	o := mqtt.NewClientOptions().SetClientID("bench-sub").SetCleanSession(true).SetAutoReconnect(false).
		SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) {
			if got.Add(1) == int64(n) {
				close(all)
			}
		})
	sub, err := s.h.Connect(port, o)
	if err != nil {
		return 0, err
	}
	defer sub.Disconnect(100)
	if t := sub.Subscribe("raw/add", 1, nil); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return 0, fmt.Errorf("subscribe: %v", t.Error())
	}
	payloads := a.take(n)
	deadline := time.Now().Add(timeout)
	start := time.Now()
	perr := publishAll(s.pub, n, window, deadline, func(i int) (string, []byte, bool) {
		return "raw/add", []byte(payloads[i].String()), false
	})
	select {
	case <-all:
	case <-time.After(time.Until(deadline)):
		return 0, errors.Join(perr, fmt.Errorf("subscriber got %d of %d messages", got.Load(), n))
	}
	if perr != nil {
		return 0, perr
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
