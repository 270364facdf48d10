// Package datadir decides where each file of vallum's data directory
// (--data-dir) lives, and locks the parts of it that one process owns.
//
//	DIR/client-id        the bridge's MQTT client id
//	DIR/client-id.lock   held by the process whose bridge uses that id
//	DIR/broker/store.log the embedded broker's store
//	DIR/broker/lock      held by the process whose broker owns the store
//	DIR/bridge/epochs    the epoch of each list at the bridge's last sync
//
// The bridge and the broker lock separately, so that `vallum broker` and a
// `vallum -h localhost` bridge may share one data dir on one host, while two
// brokers, or two bridges, on one data dir cannot start.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Dir is a data directory.
type Dir string

// ClientID is the file that keeps the bridge's client id.
func (d Dir) ClientID() string { return filepath.Join(string(d), "client-id") }

// BridgeLock is locked while a bridge uses the client id of d.
func (d Dir) BridgeLock() string { return filepath.Join(string(d), "client-id.lock") }

// Epochs is the file where the bridge keeps the epoch of each list's
// keeper record that it last synced with (bridge/epoch.go).
func (d Dir) Epochs() string { return filepath.Join(string(d), "bridge", "epochs") }

// Allow is the file where the bridge keeps the shared allowlist as it last
// read it (bridge/allow.go).
func (d Dir) Allow() string { return filepath.Join(string(d), "bridge", "allow") }

// Broker is the embedded broker's folder.
func (d Dir) Broker() string { return filepath.Join(string(d), "broker") }

// BrokerLock is locked while a broker uses the store of d.
func (d Dir) BrokerLock() string { return filepath.Join(d.Broker(), "lock") }

// Store is the embedded broker's store file.
func (d Dir) Store() string { return filepath.Join(d.Broker(), "store.log") }

// oldStore is where vallum up to 2026-11 put the store by mistake: the
// daemon passed DIR/broker to the broker, which added broker/ again.
func (d Dir) oldStore() string { return filepath.Join(d.Broker(), "broker", "store.log") }

// MigrateStore moves a store left at the old path to Store, so that an
// upgrade keeps every ban. It must be called with BrokerLock held. note
// says what it did, for the log ("" when there was nothing to do); err is
// a move that failed, which must stop the broker: starting empty would
// hide the bans. When both files exist, the one at Store wins and the old
// one stays where it is.
func (d Dir) MigrateStore() (note string, err error) {
	old := d.oldStore()
	if _, err := os.Stat(old); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if _, err := os.Stat(d.Store()); err == nil {
		return fmt.Sprintf("a store at both %s and %s: using the first, the second is left as it is", d.Store(), old), nil
	}
	// A rename within one file system: the file is whole at one of the
	// two paths at every instant.
	if err := os.Rename(old, d.Store()); err != nil {
		return "", fmt.Errorf("move the store from %s to %s: %w", old, d.Store(), err)
	}
	syncDir(d.Broker())
	_ = os.Remove(filepath.Dir(old)) // empty now, unless someone put something there
	return fmt.Sprintf("store moved from %s to %s", old, d.Store()), nil
}

// WriteAtomic replaces the file at path with data: written to a temporary
// file beside it, synced, then renamed over it, so that a crash leaves the
// old file or the new one, never a part of either. It creates the folder.
func WriteAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is there
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable, as far as the file system allows.
func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		_ = f.Close()
	}
}
