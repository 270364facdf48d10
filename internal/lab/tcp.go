package lab

import "net"

// ListenTCP opens a TCP listener inside the host on addr (e.g.
// "10.77.0.2:9000"), for tests that need a server there.
func (h *Host) ListenTCP(addr string) (net.Listener, error) {
	var l net.Listener
	err := h.inside(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// DialTCP opens a TCP connection to addr from inside the host.
func (h *Host) DialTCP(addr string) (net.Conn, error) { return h.dialIn(addr) }
