// Package mochiclose stops a mochi-mqtt server without hanging on a client
// that stopped reading.
package mochiclose

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Grace is how long a client that does not read may hold a shutdown up.
const Grace = 3 * time.Second

// Close closes srv. mochi's Server.Close writes a DISCONNECT to every
// client with no deadline, after that client's own writer, which may be
// blocked on a full socket: one client that stopped reading (a stuck
// process, an attacker) held a shutdown forever. After grace, Close
// closes every client's connection, which fails those writes at once.
//
// It also closes the listeners before Server.Close does: mochi 2.7.9's
// own closer looks clients up with Clients.GetByListener, which takes the
// clients' read lock twice; a client leaving in between (a writer
// waiting for that lock) deadlocks the shutdown for good, as seen under
// load. This closer takes it once, and Server.Close then finds every
// listener closed and no client left to look up.
func Close(srv *mqtt.Server, grace time.Duration) error {
	t := time.AfterFunc(grace, func() {
		for _, cl := range srv.Clients.GetAll() {
			if cl.Net.Conn != nil {
				_ = cl.Net.Conn.Close()
			}
		}
	})
	defer t.Stop()
	srv.Listeners.CloseAll(func(listener string) {
		for _, cl := range srv.Clients.GetAll() {
			if cl.Net.Listener == listener && !cl.Closed() {
				_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
	return srv.Close()
}
