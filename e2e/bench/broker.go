package main

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// brokerRate is the broker's own rate for one address per message at
// QoS 1: the same publisher, and a paho subscriber in this process that
// only counts, in place of a bridge, over the same buffered connection as
// vallum's.
func (s *subject) brokerRate(a *addrs, n int, timeout time.Duration) (float64, error) {
	var got atomic.Int64
	all := make(chan struct{})
	o := mqtt.NewClientOptions().SetClientID("bench-sub").SetCleanSession(true).SetAutoReconnect(false).
		SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) {
			if got.Add(1) == int64(n) {
				close(all)
			}
		})
	sub, err := dial(s.h, port, o)
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

// brokerRateSub is the broker's own rate measured with its own client:
// mosquitto_sub at QoS 1, in a process of its own as vallum is, writing
// each message to a log file. A retained "ready" it prints first says it
// has subscribed; it exits after the n messages that follow.
func (s *subject) brokerRateSub(dir string, a *addrs, n int, timeout time.Duration) (float64, error) {
	const ready, topic = "rawsub/ready", "rawsub/add"
	if t := s.pub.Publish(ready, 1, true, "ready"); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return 0, fmt.Errorf("publish ready: %v", t.Error())
	}
	defer s.pub.Publish(ready, 1, true, "")
	p, err := s.h.Start(dir, "mosquitto_sub", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-q", "1",
		"-i", "bench-mosquitto-sub", "-t", ready, "-t", topic, "-C", strconv.Itoa(n+1))
	if err != nil {
		return 0, err
	}
	defer p.Kill()
	if err := p.WaitLog("ready", 10*time.Second); err != nil {
		return 0, err
	}
	payloads := a.take(n)
	deadline := time.Now().Add(timeout)
	start := time.Now()
	perr := publishAll(s.pub, n, window, deadline, func(i int) (string, []byte, bool) {
		return topic, []byte(payloads[i].String()), false
	})
	select {
	case <-p.Done():
	case <-time.After(time.Until(deadline)):
		return 0, errors.Join(perr, errors.New("mosquitto_sub did not get every message before the deadline"))
	}
	end := time.Now()
	if err := errors.Join(perr, p.Err()); err != nil {
		return 0, err
	}
	return float64(n) / end.Sub(start).Seconds(), nil
}
