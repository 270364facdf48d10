package keeper

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/store"
	"github.com/vallum/vallum/internal/wire"
)

// copyLog is the keeper's own copy of its lists: the record of each list
// under "record/ROOT" and every state it tracks under "ban/TOPIC", as
// their wire payloads. It holds what the broker holds, no more: a lifted
// or expired ban leaves it, and the store compacts the file by itself.
// Its methods do nothing on a nil copyLog (a keeper without a copy).
type copyLog struct {
	kv    *store.KV
	lock  *datadir.Lock
	log   *slog.Logger
	quiet *quiet
}

const (
	copyRecord = "record/"
	copyBan    = "ban/"
)

// openCopy locks and opens the copy at path. A damaged record in it costs
// that record only (internal/store repairs the file and keeps the damaged
// bytes aside).
func openCopy(path string, log *slog.Logger, q *quiet) (*copyLog, error) {
	lock, err := datadir.Acquire(path+".lock", "the keeper's copy "+path)
	if err != nil {
		return nil, err
	}
	kv, err := store.Open(path, store.Options{Logger: log})
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("keeper: open its copy: %w", err)
	}
	if d := kv.Stats().Loaded; d.Records > 0 {
		log.Warn("keeper copy was damaged: the damaged records are lost, the others kept",
			"file", path, "records", d.Records, "bytes", d.Bytes, "kept_aside", d.Aside)
	}
	return &copyLog{kv: kv, lock: lock, log: log, quiet: q}, nil
}

func (c *copyLog) close() error {
	return errors.Join(c.kv.Close(), c.lock.Close())
}

func (c *copyLog) set(key string, val []byte) {
	if c == nil {
		return
	}
	if err := c.kv.Set(key, val); err != nil {
		c.quiet.error("copy", "keeper copy: write failed; a list the broker loses may not be restored whole", "err", err)
	}
}

func (c *copyLog) del(key string) {
	if c == nil {
		return
	}
	if err := c.kv.Delete(key); err != nil {
		c.quiet.error("copy", "keeper copy: write failed; a list the broker loses may not be restored whole", "err", err)
	}
}

func (c *copyLog) setRecord(root string, r wire.Record) { c.set(copyRecord+root, wire.EncodeRecord(r)) }
func (c *copyLog) setBan(topic string, s wire.State)    { c.set(copyBan+topic, wire.EncodeState(s)) }
func (c *copyLog) delBan(topic string)                  { c.del(copyBan + topic) }

// ban reads the state of topic back.
func (c *copyLog) ban(topic string) (wire.State, bool) {
	if c == nil {
		return wire.State{}, false
	}
	b, ok, err := c.kv.Get(copyBan + topic)
	if err != nil || !ok {
		return wire.State{}, false
	}
	s, err := wire.DecodeState(b)
	return s, err == nil
}

// loadCopy takes each list's epoch and the states it held from the copy.
// What belongs to no list kept now stays in the file, untouched.
func (k *Keeper) loadCopy() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var bad []string
	err := k.copy.kv.Scan(copyRecord, func(key string, val []byte) error {
		rec, err := wire.DecodeRecord(val)
		for _, l := range k.lists {
			if l.root == key[len(copyRecord):] && err == nil {
				l.rec = rec
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = k.copy.kv.Scan(copyBan, func(key string, val []byte) error {
		topic := key[len(copyBan):]
		i, what := k.route(topic)
		s, err := wire.DecodeState(val)
		switch {
		case what != onState:
		case err != nil || !k.canonical(i, topic):
			bad = append(bad, key)
		default:
			e := entry{at: s.At.UnixMilli(), exp: unixOrZero(s.Expires), list: uint16(i)}
			k.bans[topic] = e
			if e.exp != 0 {
				k.scheduleLocked(topic, e.exp)
			}
		}
		return nil
	})
	for _, key := range bad { // Scan holds the store: delete after it
		k.copy.del(key)
	}
	n := 0
	for _, l := range k.lists {
		if l.rec.Epoch != "" {
			n++
		}
	}
	k.log.Info("keeper copy loaded", "file", k.o.Copy, "lists", n, "bans", len(k.bans), "dropped", len(bad))
	return err
}

// canonical reports whether topic is a state topic of list i spelt as
// wire.StateTopic spells it.
func (k *Keeper) canonical(i int, topic string) bool {
	t, err := wire.ParseTopic(k.lists[i].root, topic)
	return err == nil && t.Kind == wire.KindState && wire.StateTopic(k.lists[i].root, t.Prefix) == topic
}
