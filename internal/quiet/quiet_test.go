package quiet

import (
	"testing"
	"time"
)

// Burst lines per reason and window; each reason has its own; the next
// window's first line learns how many were left out.
func TestWindows(t *testing.T) {
	now := time.Unix(1000, 0)
	w := Windows{Now: func() time.Time { return now }}
	shown := 0
	for range 100 {
		if ok, _ := w.Allow("a"); ok {
			shown++
		}
	}
	if shown != Burst {
		t.Errorf("%d of 100 shown in one window, want %d", shown, Burst)
	}
	if ok, left := w.Allow("b"); !ok || left != 0 {
		t.Errorf("another reason: show %v left %d, want its own window", ok, left)
	}
	now = now.Add(Every)
	if ok, left := w.Allow("a"); !ok || left != 100-Burst {
		t.Errorf("next window: show %v left %d, want true and %d", ok, left, 100-Burst)
	}
	if _, left := w.Allow("a"); left != 0 {
		t.Errorf("second line of the window: left %d, want 0 (said once)", left)
	}
}
