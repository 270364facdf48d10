package datadir

import "path/filepath"

// The standalone keeper (`vallum keeper`) keeps its own folder:
//
//	DIR/keeper/lists.log the keeper's copy of its lists (internal/store)
//	DIR/keeper/lock      held by the process whose keeper owns the copy
//
// It locks apart from the bridge and the broker, so that a keeper may run
// on a host beside them with one data dir, while two keepers cannot.

// Keeper is the standalone keeper's folder.
func (d Dir) Keeper() string { return filepath.Join(string(d), "keeper") }

// KeeperLock is locked while a keeper uses the copy of d.
func (d Dir) KeeperLock() string { return filepath.Join(d.Keeper(), "lock") }

// KeeperCopy is the keeper's copy of its lists.
func (d Dir) KeeperCopy() string { return filepath.Join(d.Keeper(), "lists.log") }

// KeeperHistory is the standalone keeper's escalation history.
func (d Dir) KeeperHistory() string { return filepath.Join(d.Keeper(), "history.log") }

// BrokerHistory is the escalation history of the hub's keeper, under the
// broker's lock.
func (d Dir) BrokerHistory() string { return filepath.Join(d.Broker(), "history.log") }
