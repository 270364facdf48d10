//go:build linux

package sensor

import (
	"context"
	"errors"
	"fmt"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"golang.org/x/sys/unix"
)

// copyRange is how much of each logged packet the kernel copies to the
// sensor: an IPv6 header and the TCP ports fit in 64 bytes.
const copyRange = 128

// read binds the NFLOG group and hands every packet to s.packet until ctx
// is done. go-nflog calls the hook from one goroutine, so the detector has
// a single caller.
func (s *Sensor) read(ctx context.Context) error {
	nf, err := nflog.Open(&nflog.Config{NetNS: s.o.NetNS, Group: s.o.Group, Copymode: nflog.CopyPacket, Bufsize: copyRange})
	if err != nil {
		return fmt.Errorf("sensor: nflog group %d: %w", s.o.Group, err)
	}
	defer nf.Close()
	hook := func(a nflog.Attribute) int {
		if a.Payload != nil {
			s.packet(*a.Payload, time.Now())
		}
		return 0
	}
	errfn := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		if errors.Is(err, unix.ENOBUFS) { // the socket overflowed: packets lost to the flood
			s.stats.Overload.Add(1)
			return 0
		}
		s.log.Warn("sensor: reading the nflog group", "err", err)
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, errfn); err != nil {
		return fmt.Errorf("sensor: nflog group %d: %w", s.o.Group, err)
	}
	s.log.Info("port scan sensor reading", "nflog_group", s.o.Group)
	<-ctx.Done()
	return nil
}
