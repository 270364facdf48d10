//go:build !linux

package nft

import (
	"context"
	"errors"
	"log/slog"

	"github.com/vallum/vallum/bridge"
)

// Options configures the backend; see the linux build for the fields.
type Options struct {
	NetNS  int
	Table  string
	Logger *slog.Logger
}

// Backend is unavailable off Linux.
type Backend struct{}

// New returns errors.ErrUnsupported: nftables exists only on Linux.
func New(o Options) (*Backend, error) { return nil, errors.ErrUnsupported }

// Ensure is not supported off Linux.
func (b *Backend) Ensure(context.Context, bridge.SetSpec) (bridge.SetInfo, error) {
	return bridge.SetInfo{}, errors.ErrUnsupported
}

// Apply is not supported off Linux.
func (b *Backend) Apply(context.Context, string, []bridge.Op) error { return errors.ErrUnsupported }

// List is not supported off Linux.
func (b *Backend) List(context.Context, string) ([]bridge.Entry, error) {
	return nil, errors.ErrUnsupported
}

// Info is not supported off Linux.
func (b *Backend) Info(context.Context, string) (bridge.SetInfo, error) {
	return bridge.SetInfo{}, errors.ErrUnsupported
}

// EnsureRules is not supported off Linux.
func (b *Backend) EnsureRules(context.Context, []bridge.SetSpec) error { return errors.ErrUnsupported }

// Counter is what vallum's drop rules of one set dropped.
type Counter struct{ Packets, Bytes uint64 }

// Dropped is not supported off Linux.
func (b *Backend) Dropped(context.Context, []bridge.SetSpec) (map[string]Counter, error) {
	return nil, errors.ErrUnsupported
}

// DropTo does nothing off Linux.
func (b *Backend) DropTo(...string) {}

// RulesInPlace is not supported off Linux.
func (b *Backend) RulesInPlace(context.Context, []bridge.SetSpec) (bool, error) {
	return false, errors.ErrUnsupported
}

// Close does nothing.
func (b *Backend) Close() error { return nil }
