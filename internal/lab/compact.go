package lab

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// Compact is a list as a compacting keeper publishes it
// (docs/compact-list.md): chunks of one generation and the manifest naming
// them. Tests and the benchmark stand in for the keeper with it where they
// need a list of a given shape (damaged, missing a chunk, a million).
type Compact struct {
	Root     string
	Gen      uint64
	Chunks   [][]byte
	Manifest wire.Manifest
}

// MakeCompact cuts entries (sorted as the keeper sorts them) into chunks
// of per, generation gen, under epoch.
func MakeCompact(root, epoch string, gen uint64, cut time.Time, entries []wire.Entry, per int) Compact {
	count := (len(entries) + per - 1) / per
	c := Compact{Root: root, Gen: gen, Manifest: wire.Manifest{Epoch: epoch, Gen: gen, Cut: cut, Entries: len(entries)}}
	for k := range count {
		ch := wire.Chunk{Root: root, Gen: gen, Index: k, Count: count, Entries: entries[k*per : min(len(entries), (k+1)*per)]}
		b := wire.EncodeChunk(ch)
		c.Chunks = append(c.Chunks, b)
		c.Manifest.CRC = append(c.Manifest.CRC, wire.ChunkCRC(b))
	}
	return c
}

// Topic is the topic of chunk n.
func (c Compact) Topic(n int) string { return wire.ChunkTopic(c.Root, c.Gen, n) }

// Publish publishes the chunks, then the manifest, retained, as a keeper
// does.
func (c Compact) Publish(p *Publisher) {
	for n, b := range c.Chunks {
		p.Publish(c.Topic(n), true, b)
	}
	p.Publish(wire.ManifestTopic(c.Root), true, wire.EncodeManifest(c.Manifest))
}

// NewPublisherAs is NewPublisher with a login (an admin's, to publish what
// only the keeper may on the embedded broker).
func (h *Host) NewPublisherAs(port int, user, password string) (*Publisher, error) {
	id := make([]byte, 4)
	rand.Read(id)
	o := mqtt.NewClientOptions().SetClientID("lab-pub-" + hex.EncodeToString(id)).SetUsername(user).SetPassword(password).
		SetCleanSession(true).SetAutoReconnect(false).SetWriteTimeout(10 * time.Second)
	c, err := h.Connect(port, o)
	if err != nil {
		return nil, err
	}
	p := &Publisher{c: c, tokens: make(chan mqtt.Token, publishWindow), done: make(chan struct{})}
	go p.collect()
	return p, nil
}
