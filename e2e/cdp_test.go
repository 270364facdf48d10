//go:build e2e

package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
)

// A minimal Chrome DevTools protocol client for the web view's browser
// tests: Debian's chromium, headless, driven over --remote-debugging-pipe
// (JSON messages ended by a NUL byte on fds 3 and 4), so that the browser
// runs inside a lab host's namespace and no port is opened. Test code
// only: nothing of it is linked into vallum.

type browser struct {
	cmd  *exec.Cmd
	w    *os.File
	mu   sync.Mutex
	next int
	wait map[int]chan cdpMsg
	logs map[string][]string // per session: console errors, exceptions, failed loads
	done chan struct{}
}

type cdpMsg struct {
	ID        int                       `json:"id,omitempty"`
	Method    string                    `json:"method,omitempty"`
	Params    json.RawMessage           `json:"params,omitempty"`
	Result    json.RawMessage           `json:"result,omitempty"`
	Error     *struct{ Message string } `json:"error,omitempty"`
	SessionID string                    `json:"sessionId,omitempty"`
}

// startBrowser runs chromium headless in h until the test ends.
func startBrowser(t *testing.T, h *lab.Host, dir string) *browser {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium (apt-get install chromium; .ci/install-deps installs it)")
	}
	toChrome, ourEnd, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromChrome, chromeOut, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, h.Name+"-chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := h.Command(bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
		"--user-data-dir="+filepath.Join(dir, "chromium-profile"), "--no-first-run", "--no-default-browser-check",
		"--disable-extensions", "--disable-background-networking", "--disable-sync", "--disable-component-update",
		"--disable-dev-shm-usage", "--mute-audio", "about:blank")
	cmd.ExtraFiles = []*os.File{toChrome, chromeOut} // fds 3 and 4
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toChrome.Close()
	chromeOut.Close()
	b := &browser{cmd: cmd, w: ourEnd, wait: map[int]chan cdpMsg{}, logs: map[string][]string{}, done: make(chan struct{})}
	go b.read(bufio.NewReaderSize(fromChrome, 1<<20))
	t.Cleanup(func() {
		b.call("", "Browser.close", nil)
		select {
		case <-b.done:
		case <-time.After(5 * time.Second):
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group we made: chromium and its helpers
		cmd.Wait()
		ourEnd.Close()
		fromChrome.Close()
	})
	if _, err := b.call("", "Browser.getVersion", nil); err != nil {
		t.Fatalf("chromium does not answer: %v (log in %s)", err, logf.Name())
	}
	return b
}

func (b *browser) read(r *bufio.Reader) {
	defer close(b.done)
	for {
		raw, err := r.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.wait {
				close(ch)
				delete(b.wait, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMsg
		if json.Unmarshal(raw[:len(raw)-1], &m) != nil {
			continue
		}
		b.mu.Lock()
		if ch, ok := b.wait[m.ID]; ok && m.ID != 0 {
			delete(b.wait, m.ID)
			ch <- m
		} else if e := pageError(m); e != "" {
			b.logs[m.SessionID] = append(b.logs[m.SessionID], e)
		}
		b.mu.Unlock()
	}
}

// pageError returns what an event says went wrong on a page, or "".
func pageError(m cdpMsg) string {
	switch m.Method {
	case "Runtime.exceptionThrown":
		return "exception: " + string(m.Params)
	case "Runtime.consoleAPICalled":
		var p struct{ Type string }
		if json.Unmarshal(m.Params, &p) == nil && (p.Type == "error" || p.Type == "assert") {
			return "console: " + string(m.Params)
		}
	case "Log.entryAdded":
		var p struct {
			Entry struct{ Level, Text, URL string }
		}
		if json.Unmarshal(m.Params, &p) == nil && p.Entry.Level == "error" {
			return "log: " + p.Entry.Text + " " + p.Entry.URL
		}
	}
	return ""
}

// call sends a command and waits (30 s at most) for its answer.
func (b *browser) call(session, method string, params any) (json.RawMessage, error) {
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpMsg, 1)
	b.wait[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	raw, _ := json.Marshal(msg)
	if _, err := b.w.Write(append(raw, 0)); err != nil {
		return nil, err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, errors.New("browser gone")
		}
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		return m.Result, nil
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s: no answer within 30 s", method)
	}
}

// tab is one page, logged in with an Authorization header.
type tab struct {
	t   *testing.T
	b   *browser
	sid string
}

func (b *browser) newTab(t *testing.T, user, password string) *tab {
	t.Helper()
	var target struct{ TargetID string }
	raw, err := b.call("", "Target.createTarget", map[string]any{"url": "about:blank"})
	mustJSON(t, raw, err, &target)
	var att struct{ SessionID string }
	raw, err = b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true})
	mustJSON(t, raw, err, &att)
	p := &tab{t: t, b: b, sid: att.SessionID}
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable", "Network.enable"} {
		p.call(m, nil)
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	p.call("Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{"Authorization": auth}})
	return p
}

func mustJSON(t *testing.T, raw json.RawMessage, err error, v any) {
	t.Helper()
	if err == nil {
		err = json.Unmarshal(raw, v)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (p *tab) call(method string, params any) json.RawMessage {
	p.t.Helper()
	raw, err := p.b.call(p.sid, method, params)
	if err != nil {
		p.t.Fatal(err)
	}
	return raw
}

// open loads url and waits until the page is loaded.
func (p *tab) open(url string) {
	p.t.Helper()
	p.call("Page.navigate", map[string]any{"url": url})
	p.waitFor(`document.readyState === "complete"`, 20*time.Second)
}

// eval evaluates a JavaScript expression (promises awaited) into v.
func (p *tab) eval(expr string, v any) error {
	raw, err := p.b.call(p.sid, "Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true})
	if err != nil {
		return err
	}
	var r struct {
		Result           struct{ Value json.RawMessage }
		ExceptionDetails *struct {
			Text      string
			Exception struct{ Description string }
		}
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("%s: %s %s", expr, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if v == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, v)
}

func (p *tab) mustEval(expr string, v any) {
	p.t.Helper()
	if err := p.eval(expr, v); err != nil {
		p.t.Fatal(err)
	}
}

func (p *tab) text(selector string) string {
	p.t.Helper()
	var s string
	p.mustEval(fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, selector), &s)
	return s
}

// waitFor polls a JavaScript condition until it is true.
func (p *tab) waitFor(cond string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		err := p.eval("!!("+cond+")", &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("not true within %v: %s (%v)", timeout, cond, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errors returns the page's console errors, exceptions and failed loads.
func (p *tab) errors() []string {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	return append([]string(nil), p.b.logs[p.sid]...)
}

// screenshot saves the top of the page, height pixels (0: all of it), as
// a PNG, at a desktop's width or a phone's.
func (p *tab) screenshot(path string, width, height int, mobile bool) {
	p.t.Helper()
	h := height
	for range 2 { // the width changes the height: measure again
		if height == 0 {
			p.mustEval(`new Promise(r => requestAnimationFrame(() => r(document.documentElement.scrollHeight)))`, &h)
		}
		p.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": max(h, 600),
			"deviceScaleFactor": 1, "mobile": mobile})
	}
	var shot struct{ Data string }
	raw := p.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": height == 0})
	if err := json.Unmarshal(raw, &shot); err != nil {
		p.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s (%d bytes)", path, len(png))
}

// artifacts is the folder where the test leaves its screenshots:
// $VALLUM_E2E_ARTIFACTS when set (kept), else a temporary one.
func artifacts(t *testing.T) string {
	if d := os.Getenv("VALLUM_E2E_ARTIFACTS"); d != "" {
		d = filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}
