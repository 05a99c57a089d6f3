package interop

// A minimal Chrome DevTools Protocol client over gorilla/websocket (already
// a dependency; see docs/dependencies.md for why not chromedp): it starts a
// headless Chromium, opens pages, evaluates JavaScript, waits for DOM
// conditions, takes screenshots and collects console errors, uncaught
// exceptions and error log entries (CSP violations, failed loads).

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// cdpChromium finds the browser, or skips the test when there is none and
// SLUICE_REQUIRE_BROWSER is unset (CI sets it, and installs chromium).
func cdpChromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SLUICE_REQUIRE_BROWSER") != "" {
		t.Fatal("chromium not found on PATH and SLUICE_REQUIRE_BROWSER is set (apt-get install -y chromium)")
	}
	t.Skip("chromium not found on PATH: browser tests skipped (apt-get install -y chromium; SLUICE_REQUIRE_BROWSER=1 makes this a failure)")
	return ""
}

// cdpArtifacts is where a test's screenshots go: $SLUICE_ARTIFACTS/<test>
// when set (kept), else a directory under t.TempDir().
func cdpArtifacts(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "artifacts")
	if a := os.Getenv("SLUICE_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

type cdpMsg struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *cdpError       `json:"error,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
}

type cdpError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type cdpBrowser struct {
	t   testing.TB
	cmd *exec.Cmd
	ws  *websocket.Conn

	wmu sync.Mutex // one writer

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpMsg
	pages   map[string]*cdpPage // by session id
	closed  chan struct{}
	exited  chan struct{}
}

var cdpListeningRE = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// cdpStart launches headless Chromium, stopped when the test ends.
func cdpStart(t testing.TB) *cdpBrowser {
	t.Helper()
	bin := cdpChromium(t)
	profile := t.TempDir()
	cmd := exec.Command(bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "--user-data-dir="+profile,
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--metrics-recording-only", "--mute-audio",
		"--window-size=1440,900", "about:blank")
	setGroup(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	b := &cdpBrowser{t: t, cmd: cmd, pending: map[int64]chan cdpMsg{}, pages: map[string]*cdpPage{}, closed: make(chan struct{}), exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(b.exited) }()
	t.Cleanup(b.stop)
	logs := newLineLog()
	dumpOnFailure(t, "chromium", map[string]*lineLog{"stderr": logs})
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			logs.add(line)
			if m := cdpListeningRE.FindStringSubmatch(line); m != nil && !sent {
				urlCh <- m[1]
				sent = true
			}
		}
		logs.close()
	}()
	var wsURL string
	select {
	case wsURL = <-urlCh:
	case <-time.After(30 * time.Second):
		t.Fatal("chromium printed no DevTools URL within 30 s")
	}
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatalf("dialing chromium's DevTools socket: %v", err)
	}
	ws.SetReadLimit(256 << 20) // screenshots
	b.ws = ws
	go b.read()
	return b
}

// stop closes the browser (Browser.close, so that it stops writing to its
// profile), then kills what is left of its process group.
func (b *cdpBrowser) stop() {
	if b.ws != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.call(ctx, "", "Browser.close", nil, nil)
		cancel()
		select {
		case <-b.exited:
		case <-time.After(5 * time.Second):
		}
		_ = b.ws.Close()
	}
	killGroup(b.cmd)
	<-b.exited
}

func (b *cdpBrowser) read() {
	defer close(b.closed)
	for {
		var m cdpMsg
		if err := b.ws.ReadJSON(&m); err != nil {
			return
		}
		b.mu.Lock()
		if m.ID != 0 {
			ch := b.pending[m.ID]
			delete(b.pending, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		p := b.pages[m.SessionID]
		b.mu.Unlock()
		if p != nil {
			p.event(m)
		}
	}
}

// call sends a command (to a page's session when session != "") and
// waits for its answer.
func (b *cdpBrowser) call(ctx context.Context, session, method string, params any, out any) error {
	if params == nil {
		params = struct{}{}
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	ch := make(chan cdpMsg, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	b.wmu.Lock()
	err = b.ws.WriteJSON(cdpMsg{ID: id, Method: method, Params: raw, SessionID: session})
	b.wmu.Unlock()
	if err != nil {
		return err
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(m.Result, out)
		}
		return nil
	case <-b.closed:
		return fmt.Errorf("%s: the DevTools connection closed", method)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// cdpPage is one tab.
type cdpPage struct {
	b       *cdpBrowser
	session string

	mu       sync.Mutex
	problems []string // console errors, exceptions, error log entries
	loaded   chan struct{}
}

// newPage opens a blank tab with Runtime, Page and Log events on.
func (b *cdpBrowser) newPage(ctx context.Context) *cdpPage {
	b.t.Helper()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		b.t.Fatal(err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		b.t.Fatal(err)
	}
	p := &cdpPage{b: b, session: att.SessionID, loaded: make(chan struct{}, 16)}
	b.mu.Lock()
	b.pages[p.session] = p
	b.mu.Unlock()
	for _, m := range []string{"Runtime.enable", "Page.enable", "Log.enable"} {
		if err := b.call(ctx, p.session, m, nil, nil); err != nil {
			b.t.Fatal(err)
		}
	}
	if err := b.call(ctx, p.session, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		b.t.Fatal(err)
	}
	return p
}

func (p *cdpPage) event(m cdpMsg) {
	switch m.Method {
	case "Page.loadEventFired":
		select {
		case p.loaded <- struct{}{}:
		default:
		}
	case "Runtime.consoleAPICalled":
		var ev struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		_ = json.Unmarshal(m.Params, &ev)
		if ev.Type == "error" || ev.Type == "assert" {
			var parts []string
			for _, a := range ev.Args {
				if a.Description != "" {
					parts = append(parts, a.Description)
				} else {
					parts = append(parts, fmt.Sprint(a.Value))
				}
			}
			p.problem("console." + ev.Type + ": " + strings.Join(parts, " "))
		}
	case "Runtime.exceptionThrown":
		var ev struct {
			Details struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		_ = json.Unmarshal(m.Params, &ev)
		p.problem("exception: " + ev.Details.Text + " " + ev.Details.Exception.Description)
	case "Log.entryAdded":
		var ev struct {
			Entry struct {
				Level  string `json:"level"`
				Source string `json:"source"`
				Text   string `json:"text"`
				URL    string `json:"url"`
			} `json:"entry"`
		}
		_ = json.Unmarshal(m.Params, &ev)
		if ev.Entry.Level == "error" {
			p.problem("log (" + ev.Entry.Source + "): " + ev.Entry.Text + " " + ev.Entry.URL)
		}
	}
}

func (p *cdpPage) problem(s string) {
	p.mu.Lock()
	p.problems = append(p.problems, s)
	p.mu.Unlock()
}

// Problems returns the console errors, exceptions and error log entries
// seen so far.
func (p *cdpPage) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

// navigate loads url and waits for its load event.
func (p *cdpPage) navigate(ctx context.Context, url string) {
	p.b.t.Helper()
	for len(p.loaded) > 0 {
		<-p.loaded
	}
	var res struct {
		ErrorText string `json:"errorText"`
	}
	if err := p.b.call(ctx, p.session, "Page.navigate", map[string]any{"url": url}, &res); err != nil {
		p.b.t.Fatal(err)
	}
	if res.ErrorText != "" {
		p.b.t.Fatalf("navigating to %s: %s", url, res.ErrorText)
	}
	select {
	case <-p.loaded:
	case <-ctx.Done():
		p.b.t.Fatalf("%s: no load event: %v", url, ctx.Err())
	}
}

// eval evaluates expr (awaiting a promise) and decodes its value into out.
func (p *cdpPage) eval(ctx context.Context, expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := p.b.call(ctx, p.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		return err
	}
	if d := res.ExceptionDetails; d != nil {
		return fmt.Errorf("evaluating %q: %s %s", expr, d.Text, d.Exception.Description)
	}
	if out != nil && len(res.Result.Value) > 0 {
		return json.Unmarshal(res.Result.Value, out)
	}
	return nil
}

// mustEval is eval that fails the test on error.
func (p *cdpPage) mustEval(ctx context.Context, expr string, out any) {
	p.b.t.Helper()
	if err := p.eval(ctx, expr, out); err != nil {
		p.b.t.Fatal(err)
	}
}

// waitFor waits until the JavaScript condition cond is truthy: the page
// re-checks it on every DOM change (MutationObserver) and the promise
// resolves at the first true; ctx, and 20 s, bound the wait.
func (p *cdpPage) waitFor(ctx context.Context, what, cond string) {
	p.b.t.Helper()
	js := `new Promise((resolve) => {
  const check = () => { try { return !!(` + cond + `); } catch (e) { return false; } };
  if (check()) { resolve(true); return; }
  const obs = new MutationObserver(() => { if (check()) { obs.disconnect(); resolve(true); } });
  obs.observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
})`
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var ok bool
	if err := p.eval(ctx, js, &ok); err != nil || !ok {
		var body string
		_ = p.eval(context.Background(), `document.body ? document.body.innerText.slice(0, 3000) : ''`, &body)
		p.b.t.Fatalf("waiting for %s (%s): %v\npage text:\n%s\nproblems: %q", what, cond, err, body, p.Problems())
	}
}

// screenshot saves a PNG of the page as dir/name.png.
func (p *cdpPage) screenshot(ctx context.Context, dir, name string) string {
	p.b.t.Helper()
	var res struct {
		Data string `json:"data"`
	}
	if err := p.b.call(ctx, p.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &res); err != nil {
		p.b.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil || len(png) < 8 || string(png[1:4]) != "PNG" {
		p.b.t.Fatalf("screenshot %s: not a PNG (%v)", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.b.t.Fatal(err)
	}
	return path
}

// click clicks the first element matching the CSS selector.
func (p *cdpPage) click(ctx context.Context, selector string) {
	p.b.t.Helper()
	var ok bool
	p.mustEval(ctx, `(() => { const el = document.querySelector(`+jsString(selector)+`); if (!el) return false; el.click(); return true; })()`, &ok)
	if !ok {
		p.b.t.Fatalf("click: no element %s", selector)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
