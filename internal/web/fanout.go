package web

import "sync"

// fanout sends events to every watcher without ever blocking the sender
// (the broker's publishing goroutine): a watcher whose buffer is full
// misses events, and its stream says so.
type fanout struct {
	mu  sync.Mutex
	chs map[chan Event]struct{}
}

// watchBuffer is how many events a slow page may fall behind.
const watchBuffer = 256

func newFanout() *fanout { return &fanout{chs: map[chan Event]struct{}{}} }

func (f *fanout) send(e Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.chs {
		select {
		case ch <- e:
		default:
		}
	}
}

func (f *fanout) watch() (<-chan Event, func()) {
	ch := make(chan Event, watchBuffer)
	f.mu.Lock()
	f.chs[ch] = struct{}{}
	f.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.chs, ch)
			f.mu.Unlock()
		})
	}
}
