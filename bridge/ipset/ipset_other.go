//go:build !linux

package ipset

import (
	"errors"
	"strconv"
)

// New returns errors.ErrUnsupported: ipset exists only on Linux.
func New(o Options) (*Backend, error) {
	return nil, errors.ErrUnsupported
}

func codeText(code int) string { return "error " + strconv.Itoa(code) }
