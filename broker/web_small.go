//go:build vallum_small

package broker

import (
	"context"
	"errors"
)

// The web view (internal/web) is not in the 32-bit router builds (armv7,
// mips, mipsle): with it they are over the 10 MB goal (armv7 10,006,690
// bytes, mips 10,150,081). A router is a host, seldom the hub; --web
// there is refused at start.
type webHub struct{}

func (b *Broker) startWeb() error { return nil } // validateWeb refused --web

func (o *Options) validateWeb() error {
	if o.Web == "" {
		return nil
	}
	return errors.New("--web: the web view is not in the 32-bit router builds (size); serve it from a hub built for another target")
}

func (*webHub) Feed(string, []byte, bool) {}
func (*webHub) load()                     {}
func (*webHub) serve(context.Context)     {}
func (b *Broker) closeWeb()               {}

// WebAddr is where the web view listens: nowhere in this build.
func (b *Broker) WebAddr() string { return "" }
