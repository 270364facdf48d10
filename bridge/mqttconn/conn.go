// Package mqttconn is the broker connection under paho: the same dialling
// as paho's own, with reads buffered and writes coalesced. It also holds
// what the bridge and the keeper share above it: the broker list, turned
// on every reconnection (Brokers), paho's options (ClientOptions) and the
// first connection (Connect).
//
// paho reads each packet in three small reads (one byte of header, the
// length byte by byte, the body) and writes each packet, every PUBACK
// included, in a write of its own: at one address per message that is
// four system calls a message, which cost vallum more than the kernel
// update itself. Here reads come from a buffer, and writes are queued and
// sent by one flusher: whatever queued while the last write was in the
// kernel leaves in the next one (group commit). There is no linger: a lone
// write goes at once, so latency does not grow.
package mqttconn

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"
)

const (
	readBuffer = 32 << 10
	// maxPending bounds what queues behind a slow socket: past it Write
	// waits, as a plain socket write would.
	maxPending = 1 << 20
	// keepBuffer is the most a write buffer keeps between writes.
	keepBuffer = 64 << 10
	// closeFlush is how long Close waits to send what is still queued (a
	// DISCONNECT, the last PUBACKs) before it closes regardless.
	closeFlush = time.Second
)

var errClosed = errors.New("mqttconn: connection closed")

// Conn is a net.Conn with a read buffer and coalesced writes. One reader
// at a time, as paho does; writes may come from any goroutine.
type Conn struct {
	net.Conn
	r *bufio.Reader

	mu       sync.Mutex
	cond     sync.Cond // signalled when pending shrinks or the state changes
	pending  []byte
	flushing bool // the flusher owns the socket's write side
	closed   bool
	err      error // the first write error; every later Write returns it
	wake     chan struct{}
	done     chan struct{} // closed when the flusher has exited
}

// Wrap buffers c. The flusher goroutine lives until Close.
func Wrap(c net.Conn) *Conn {
	w := &Conn{Conn: c, r: bufio.NewReaderSize(c, readBuffer), wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.cond.L = &w.mu
	go w.flusher()
	return w
}

// Read reads from the buffer, filling it from the socket when empty.
func (w *Conn) Read(p []byte) (int, error) { return w.r.Read(p) }

// Write queues p for the flusher and returns. A write error of an earlier
// flush is returned here, after which the connection is closed.
func (w *Conn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.pending) >= maxPending && w.err == nil && !w.closed {
		w.cond.Wait()
	}
	switch {
	case w.err != nil:
		return 0, w.err
	case w.closed:
		return 0, errClosed
	}
	w.pending = append(w.pending, p...)
	if !w.flushing {
		w.flushing = true
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// flusher sends what is pending, in one write each time round, until
// Close. Whatever was queued during a write goes in the next.
func (w *Conn) flusher() {
	defer close(w.done)
	var buf []byte
	for range w.wake {
		for {
			w.mu.Lock()
			if len(w.pending) == 0 || w.err != nil {
				w.flushing = false
				w.pending = w.pending[:0]
				w.cond.Broadcast()
				stop := w.closed
				w.mu.Unlock()
				if stop {
					return
				}
				break
			}
			buf, w.pending = w.pending, buf[:0]
			closing := w.closed
			w.cond.Broadcast()
			w.mu.Unlock()
			if closing {
				// Set here, not in Close: a WebSocket connection's
				// deadline and writes must come from one goroutine.
				w.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
			}
			if _, err := w.Conn.Write(buf); err != nil {
				w.fail(err)
			}
			if cap(buf) > keepBuffer {
				buf = nil // a stall grew it: give the memory back
			}
		}
	}
}

// fail records the first write error and closes the socket, so that the
// reader (paho's) sees the connection end as it would with a plain socket.
func (w *Conn) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	w.Conn.Close()
}

// Close sends what is still queued, for at most closeFlush, then closes.
func (w *Conn) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errClosed
	}
	w.closed = true
	w.flushing = true // the flusher may be idle: have it run once more and exit
	w.cond.Broadcast()
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(closeFlush)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		// A write stalled before Close: closing the socket ends it
		// (Close may be called concurrently with Write, on TCP and on
		// gorilla's WebSocket connections alike).
	}
	err := w.Conn.Close()
	<-w.done
	return err
}
