package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/retained"
)

// Retained is one message for Publisher.Publish: a retained state, or an
// empty payload for an unban.
type Retained struct {
	Topic   string
	Payload []byte
}

// Publisher publishes QoS 1 messages with many in flight: a test that
// waited on each token would take a minute for 100,000 bans.
type Publisher struct {
	c      mqtt.Client
	tokens chan mqtt.Token
	done   chan struct{}
	mu     sync.Mutex
	errs   []error
	n      int
}

// publishWindow bounds the messages in flight: paho has 65,535 message
// ids, and a broker's inflight queue is finite.
const publishWindow = 2000

// NewPublisher connects a clean-session client to the broker on port of
// the host's loopback, from inside the host.
func (h *Host) NewPublisher(port int) (*Publisher, error) {
	id := make([]byte, 4)
	rand.Read(id)
	o := mqtt.NewClientOptions().SetClientID("lab-pub-" + hex.EncodeToString(id)).
		SetCleanSession(true).SetAutoReconnect(false).SetWriteTimeout(10 * time.Second)
	c, err := h.Connect(port, o)
	if err != nil {
		return nil, err
	}
	p := &Publisher{c: c, tokens: make(chan mqtt.Token, publishWindow), done: make(chan struct{})}
	go p.collect()
	return p, nil
}

// collect waits on the tokens in the order they were issued.
func (p *Publisher) collect() {
	defer close(p.done)
	for t := range p.tokens {
		var err error
		if !t.WaitTimeout(30 * time.Second) {
			err = errors.New("publish not acknowledged within 30 s")
		} else {
			err = t.Error()
		}
		if err != nil {
			p.mu.Lock()
			if len(p.errs) < 5 {
				p.errs = append(p.errs, err)
			}
			p.mu.Unlock()
		}
	}
}

// Publish sends one message at QoS 1; it blocks only while the window is
// full.
func (p *Publisher) Publish(topic string, retained bool, payload []byte) {
	p.n++
	p.tokens <- p.c.Publish(topic, 1, retained, payload)
}

// PublishAll publishes every message retained, in order.
func (p *Publisher) PublishAll(msgs []Retained) {
	for _, m := range msgs {
		p.Publish(m.Topic, true, m.Payload)
	}
}

// Close waits until the broker has acknowledged every message (the window
// drains within 30 s per message at worst), disconnects and returns the
// first errors.
func (p *Publisher) Close() error {
	close(p.tokens)
	<-p.done
	p.c.Disconnect(250)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		return fmt.Errorf("%d messages, some failed: %w", p.n, errors.Join(p.errs...))
	}
	return nil
}

// RetainedState subscribes a fresh clean-session client to filter and
// returns the retained messages the broker holds (topic -> payload, empty
// payloads left out), once they have paused for quiet (none at all for
// quiet: none held). At most 60 s.
func (h *Host) RetainedState(port int, filter string, quiet time.Duration) (map[string]string, error) {
	id := make([]byte, 4)
	rand.Read(id)
	var mu sync.Mutex
	got := map[string]string{}
	o := mqtt.NewClientOptions().SetClientID("lab-state-" + hex.EncodeToString(id)).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(true)
	c, err := h.Connect(port, o)
	if err != nil {
		return nil, err
	}
	defer c.Disconnect(250)
	rd, err := retained.Subscribe(c, filter, 1, "", func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		defer mu.Unlock()
		if !m.Retained() {
			return // live traffic: the test asks once publishers are done
		}
		if len(m.Payload()) == 0 {
			delete(got, m.Topic())
		} else {
			got[m.Topic()] = string(m.Payload())
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filter, err)
	}
	err = rd.Wait(retained.Timing{Stall: quiet, Quiet: quiet, Limit: 60 * time.Second})
	if errors.Is(err, retained.Empty) { // none held
		err = nil
	}
	mu.Lock()
	defer mu.Unlock()
	return got, err
}

// SetCount returns the number of entries in an ipset, read from its
// header (`ipset list -t`): cheap enough to poll while 100,000 arrive.
func (h *Host) SetCount(set string) (int, error) {
	out, err := h.Exec("ipset", "list", "-t", set)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if n, ok := strings.CutPrefix(line, "Number of entries:"); ok {
			return strconv.Atoi(strings.TrimSpace(n))
		}
	}
	return 0, fmt.Errorf("ipset list -t %s: no entry count in %q", set, clip(out))
}
