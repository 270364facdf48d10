package keeper

import (
	"fmt"
	"log/slog"
	"strings"

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
	quiet *logQuiet
}

const (
	copyRecord = "record/"
	copyBan    = "ban/"
)

// openCopy locks and opens the copy at path. A damaged record in it costs
// that record only (internal/store repairs the file and keeps the damaged
// bytes aside).
func openCopy(path string, log *slog.Logger, q *logQuiet) (*copyLog, error) {
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
// What belongs to no list kept now stays in the file, untouched; a state
// that is misspelt or refused now leaves it.
func (k *Keeper) loadCopy() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var bad []string
	err := k.copy.kv.Scan("", func(key string, val []byte) error {
		if root, ok := strings.CutPrefix(key, copyRecord); ok {
			for _, l := range k.lists {
				if rec, err := wire.DecodeRecord(val); l.root == root && err == nil {
					l.rec = rec
				}
			}
			return nil
		}
		topic, _ := strings.CutPrefix(key, copyBan)
		i, what := k.route(topic)
		if what != onState {
			return nil // a list not kept now
		}
		if p, _ := k.parse(i, topic, val); p.canon != topic || p.del {
			bad = append(bad, key)
		} else {
			e := k.entryLocked(i, p.state)
			e.gen = 0 // not seen on the broker yet
			k.bans[topic] = e
			if e := k.bans[topic]; e.exp != 0 {
				k.scheduleLocked(topic, e.exp)
			}
		}
		return nil
	})
	for _, key := range bad { // Scan holds the store: delete after it
		k.copy.del(key)
	}
	k.log.Info("keeper copy loaded", "file", k.o.Copy, "bans", len(k.bans), "dropped", len(bad))
	return err
}
