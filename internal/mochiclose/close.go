// Package mochiclose stops a mochi-mqtt server without hanging on a client
// that stopped reading.
package mochiclose

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// Grace is how long a client that does not read may hold a shutdown up.
const Grace = 3 * time.Second

// Close closes srv. mochi's Server.Close writes a DISCONNECT to every
// client with no deadline, after that client's own writer, which may be
// blocked on a full socket: one client that stopped reading (a stuck
// process, an attacker) held a shutdown forever. After grace, Close
// closes every client's connection, which fails those writes at once.
func Close(srv *mqtt.Server, grace time.Duration) error {
	t := time.AfterFunc(grace, func() {
		for _, cl := range srv.Clients.GetAll() {
			if cl.Net.Conn != nil {
				_ = cl.Net.Conn.Close()
			}
		}
	})
	defer t.Stop()
	return srv.Close()
}
