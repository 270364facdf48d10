package mqttconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// gated is a net.Conn whose writes wait for the gate to open and are
// counted, and whose reads are counted.
type gated struct {
	net.Conn
	gate   chan struct{}
	mu     sync.Mutex
	writes [][]byte
	reads  int
	werr   error
}

func newGated(c net.Conn) *gated { return &gated{Conn: c, gate: make(chan struct{})} }

func (g *gated) Write(p []byte) (int, error) {
	<-g.gate
	g.mu.Lock()
	g.writes = append(g.writes, bytes.Clone(p))
	err := g.werr
	g.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return g.Conn.Write(p)
}

func (g *gated) Read(p []byte) (int, error) {
	g.mu.Lock()
	g.reads++
	g.mu.Unlock()
	return g.Conn.Read(p)
}

func (g *gated) count() (writes, reads int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.writes), g.reads
}

// pair returns two ends of a loopback TCP connection.
func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// readAll reads from c until want bytes arrived or 5 s passed.
func readAll(t *testing.T, c net.Conn, want int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, want)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", want, err)
	}
	return b
}

// Writes queued while the socket is busy leave together, in order.
func TestWritesCoalesce(t *testing.T) {
	c, s := pair(t)
	g := newGated(c)
	w := Wrap(g)
	defer w.Close()
	var want []byte
	for i := range 100 {
		p := []byte{0x40, 0x02, 0, byte(i)} // a PUBACK
		want = append(want, p...)
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	close(g.gate)
	if got := readAll(t, s, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("peer got %x, want %x", got, want)
	}
	// The first write took the first PUBACK; all others queued behind it.
	if n, _ := g.count(); n > 2 {
		t.Errorf("100 writes took %d socket writes, want at most 2", n)
	}
}

// Reads come from the buffer: many small reads, few socket reads.
func TestReadsBuffered(t *testing.T) {
	c, s := pair(t)
	g := newGated(c)
	close(g.gate)
	w := Wrap(g)
	defer w.Close()
	msg := bytes.Repeat([]byte("0123456789"), 100)
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(msg))
	b := make([]byte, 1)
	w.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(msg) {
		if _, err := io.ReadFull(w, b); err != nil {
			t.Fatal(err)
		}
		got = append(got, b[0])
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("bytes read differ from bytes sent")
	}
	if _, reads := g.count(); reads > 10 {
		t.Errorf("1,000 one-byte reads took %d socket reads", reads)
	}
}

// A write error is returned by the next Write, and the socket is closed so
// that the reader sees the end as it would without the wrapper.
func TestWriteErrorSurfaces(t *testing.T) {
	c, _ := pair(t)
	g := newGated(c)
	g.werr = errors.New("boom")
	close(g.gate)
	w := Wrap(g)
	defer w.Close()
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatalf("first write: %v (it is only queued)", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = w.Write([]byte("y"))
		time.Sleep(time.Millisecond)
	}
	if err == nil || err.Error() != "boom" {
		t.Fatalf("later write: %v, want boom", err)
	}
	w.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := w.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a failed write: %v, want the closed socket's error", err)
	}
}

// Close sends what is queued before closing: a DISCONNECT is not lost.
func TestCloseFlushes(t *testing.T) {
	c, s := pair(t)
	w := Wrap(c)
	want := bytes.Repeat([]byte{0xe0, 0x00}, 1000)
	for i := 0; i < len(want); i += 2 {
		w.Write(want[i : i+2])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("peer got %d bytes, want %d", len(got), len(want))
	}
	if _, err := w.Write([]byte("late")); err == nil {
		t.Error("write after Close succeeded")
	}
}

// Behind a socket that does not drain, Write waits once a megabyte is
// queued instead of growing without bound.
func TestPendingBounded(t *testing.T) {
	c, s := pair(t)
	g := newGated(c)
	w := Wrap(g)
	chunk := bytes.Repeat([]byte{'z'}, 64<<10)
	const total = 4 * maxPending
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; n < total; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}()
	select {
	case <-done:
		t.Fatal("4 MiB queued behind a socket that takes nothing")
	case <-time.After(100 * time.Millisecond):
	}
	close(g.gate)
	readAll(t, s, total)
	<-done
	w.Close()
}

// Open dials tcp and unix as paho would, and refuses unknown schemes.
func TestOpen(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sock := filepath.Join(t.TempDir(), "broker.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	o := *mqtt.NewClientOptions()
	for _, u := range []string{"tcp://" + l.Addr().String(), "mqtt://" + l.Addr().String(), "unix://" + sock} {
		uri, _ := url.Parse(u)
		c, err := Open(uri, o)
		if err != nil {
			t.Errorf("Open(%s): %v", u, err)
			continue
		}
		c.Close()
	}
	uri, _ := url.Parse("gopher://" + l.Addr().String())
	if _, err := Open(uri, o); err == nil {
		t.Error("Open(gopher://) succeeded")
	}
}
