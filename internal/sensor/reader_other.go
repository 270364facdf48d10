//go:build !linux

package sensor

import (
	"context"
	"errors"
	"fmt"
)

func (s *Sensor) read(context.Context) error {
	return fmt.Errorf("--sensor needs Linux's NFLOG: %w", errors.ErrUnsupported)
}
