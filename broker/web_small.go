//go:build vallum_noweb

package broker

import (
	"context"
	"errors"
)

// The web view (internal/web) is not in the router builds (vallum_small:
// armv7, mips, mipsle; vallum_noweb: arm64): with it they are over the
// 10 MB goal (armv7 10,006,690 bytes, mips 10,150,081, arm64 10,027,170).
// A router is a host, seldom the hub; --web there is refused at start.
type webHub struct{}

// WebBuilt says whether this build has the web view (Options.Web).
const WebBuilt = false

const webBuilt = WebBuilt

func (b *Broker) startWeb() error { return nil } // validateWeb refused --web

func (o *Options) validateWeb(errs *[]error) {
	if o.Web != "" {
		*errs = append(*errs, errors.New("web: the web view is not in the router builds (size); serve it from a hub built for amd64"))
	}
}

func (*webHub) Feed(string, []byte, bool) {}
func (*webHub) load()                     {}
func (*webHub) serve(context.Context)     {}
func (b *Broker) closeWeb()               {}

// WebAddr is where the web view listens: nowhere in this build.
func (b *Broker) WebAddr() string { return "" }
