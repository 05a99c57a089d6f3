package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// consoleFixture is an engine with official-SDK workers (Node 0.22.1:
// worker.mjs as "cw", modules.mjs as "cm"), a Go client, the console URL
// and the stream client address.
type consoleFixture struct {
	e       *engineProc
	c       *sluice.Client
	console string
	streams string
	flakyOK atomic.Bool
	flaky   chan json.RawMessage
}

var streamsServedRE = regexp.MustCompile(`msg="stream clients served" addr=(\S+)`)

func startConsoleFixture(t *testing.T, ctx context.Context, extra ...string) *consoleFixture {
	t.Helper()
	f := flavourNamed("node-0.22.1")
	f.require(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("streams:\n  addr: 127.0.0.1:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fx := &consoleFixture{flaky: make(chan json.RawMessage, 16)}
	fx.e = startEngine(t, "127.0.0.1:0", append([]string{"--config", cfg, "--data-dir", filepath.Join(dir, "data")}, extra...)...)
	line, err := fx.e.stderr.wait(ctx, consoleRE.MatchString)
	if err != nil {
		t.Fatal(err)
	}
	fx.console = consoleRE.FindStringSubmatch(line)[1]
	line, err = fx.e.stderr.wait(ctx, streamsServedRE.MatchString)
	if err != nil {
		t.Fatal(err)
	}
	fx.streams = streamsServedRE.FindStringSubmatch(line)[1]
	return fx
}

// workers connects the Go client and the Node workers.
func (fx *consoleFixture) workers(t *testing.T, ctx context.Context, opts ...string) {
	t.Helper()
	f := flavourNamed("node-0.22.1")
	fx.c = connectGo(t, fx.e, "console-go")
	if err := sluice.Register(fx.c, "gomod::seen", func(context.Context, json.RawMessage) (any, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	// cons::flaky fails until flakyOK: its job dead-letters, and the
	// console's redrive then delivers it again.
	if err := sluice.Register(fx.c, "cons::flaky", func(_ context.Context, in json.RawMessage) (any, error) {
		if !fx.flakyOK.Load() {
			return nil, fmt.Errorf("not yet")
		}
		fx.flaky <- in
		return map[string]bool{"ok": true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	startWorker(t, f, fx.e, f.script("worker"), "cw")
	startWorker(t, f, fx.e, f.script("modules"), "cm")
	waitFunctions(ctx, t, fx.c, "cw::echo", "cw::fail", "cw.transform::coordinator", "cm::call", "cm::on_cron", "cons::flaky")
	if _, err := fx.c.RegisterTrigger(sluice.TriggerSpec{Type: "http", FunctionID: "cw::echo", Config: map[string]any{"api_path": "/cw/echo", "http_method": "POST"}}); err != nil {
		t.Fatal(err)
	}
	for {
		if r, err := http.Post(fx.e.HTTPURL+"/cw/echo", "application/json", strings.NewReader(`{}`)); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("the HTTP route /cw/echo never answered 200")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (fx *consoleFixture) httpEcho(t *testing.T) {
	t.Helper()
	r, err := http.Post(fx.e.HTTPURL+"/cw/echo", "application/json", strings.NewReader(`{"from":"test"}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("POST /cw/echo: %d", r.StatusCode)
	}
}

// nodeCall makes the Node modules worker call fn (so the caller is an
// official-SDK worker).
func (fx *consoleFixture) nodeCall(ctx context.Context, t *testing.T, fn string, payload any) json.RawMessage {
	t.Helper()
	return modCall(ctx, t, fx.c, "cm", fn, payload)
}

// consoleText is the text of the first element matching selector.
func consoleText(sel string) string {
	return `((document.querySelector(` + jsString(sel) + `) || {}).textContent || '')`
}

// TestConsoleBrowser drives the web console in headless Chromium against
// the built binary with Node SDK workers: every page loads and shows data
// the workers produced, the live pages update by server push (a count
// changes on screen after the page loaded, without navigation), a
// dead-lettered job is redriven from the DLQ browser and then delivered,
// the trigger form calls a Node function, no page logs a console error,
// an exception or a CSP violation. Screenshots of each page are saved
// (SLUICE_ARTIFACTS, else under the test's temp dir).
func TestConsoleBrowser(t *testing.T) {
	ctx := ctxFor(t, 120*time.Second)
	b := cdpStart(t)
	fx := startConsoleFixture(t, ctx)
	fx.workers(t, ctx)
	c := fx.c
	art := cdpArtifacts(t)
	t.Logf("screenshots: %s", art)

	// A known workload.
	for i := range 3 {
		if _, err := c.Trigger(ctx, "cw::echo", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Trigger(ctx, "cw::fail", map[string]any{}); err == nil {
		t.Fatal("cw::fail succeeded")
	}
	fx.httpEcho(t) // 2 requests on the route so far (one while waiting for it)
	checkTransform(ctx, t, c, "cw.transform::coordinator", nil)
	fx.nodeCall(ctx, t, "state::set", map[string]any{"scope": "console", "key": "k1", "value": map[string]int{"n": 1}})
	fx.nodeCall(ctx, t, "stream::set", map[string]any{"stream_name": "board", "group_id": "g", "item_id": "x", "data": map[string]int{"v": 1}})
	if _, err := c.Trigger(ctx, "queue::define", map[string]any{"name": "consq", "max_retries": 1, "backoff_ms": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enqueue(ctx, "consq", "cons::flaky", map[string]string{"job": "redrive-me"}); err != nil {
		t.Fatal(err)
	}
	queueWaitDead(ctx, t, c, "consq", 1)

	p := b.newPage(ctx)
	open := func(page string) {
		t.Helper()
		p.navigate(ctx, "about:blank") // each page from a fresh load
		p.navigate(ctx, fx.console+"/#/"+page)
		p.waitFor(ctx, page+" page", `document.querySelector('#main').dataset.page === `+jsString(page))
	}

	// Workers: both Node workers, with their runtime.
	open("workers")
	p.waitFor(ctx, "the Node workers", `document.querySelector('tr[data-worker-name="cw"]') && document.querySelector('tr[data-worker-name="cm-modules"]') && document.querySelector('tr[data-worker-name="cw"]').textContent.includes('node')`)
	p.screenshot(ctx, art, "workers")

	// Functions: counts and errors from the metrics; live: one more call
	// after the page loaded shows up without reloading.
	open("functions")
	p.waitFor(ctx, "cw::echo with 3 calls + the HTTP one", consoleText(`tr[data-function="cw::echo"] .calls`)+` === '5'`)
	p.waitFor(ctx, "cw::fail with an error", consoleText(`tr[data-function="cw::fail"] .errors`)+` === '1'`)
	p.waitFor(ctx, "cw::echo's http trigger", consoleText(`tr[data-function="cw::echo"]`)+`.includes('http POST /cw/echo')`)
	p.waitFor(ctx, "cm::on_cron's cron trigger", consoleText(`tr[data-function="cm::on_cron"]`)+`.includes('cron')`)
	if _, err := c.Trigger(ctx, "cw::echo", "live"); err != nil {
		t.Fatal(err)
	}
	p.waitFor(ctx, "the live call count", consoleText(`tr[data-function="cw::echo"] .calls`)+` === '6'`)
	p.screenshot(ctx, art, "functions")

	// HTTP routes: requests counted per route, live.
	open("routes")
	p.waitFor(ctx, "POST /cw/echo with 2 requests", consoleText(`tr[data-route="POST /cw/echo"] .requests`)+` === '2'`)
	fx.httpEcho(t)
	p.waitFor(ctx, "the live request count", consoleText(`tr[data-route="POST /cw/echo"] .requests`)+` === '3'`)
	p.screenshot(ctx, art, "routes")

	// Channels: the transform's bytes; a second transform while the page
	// is open shows throughput above zero at some snapshot.
	open("channels")
	p.waitFor(ctx, "channel bytes", `!`+consoleText(`#ch-bytes .v`)+`.startsWith('0 ')`)
	p.mustEval(ctx, `window.__sawThroughput = false; new MutationObserver(() => { if (!`+consoleText(`#ch-bps .v`)+`.startsWith('0 ')) window.__sawThroughput = true; }).observe(document.querySelector('#main'), {subtree: true, childList: true, characterData: true}); true`, nil)
	checkTransform(ctx, t, c, "cw.transform::coordinator", nil)
	p.waitFor(ctx, "live channel throughput", `window.__sawThroughput`)
	// A channel the Go client holds open: listed with its owner, its
	// connected writer, its waiting reader and the bytes written.
	ch, err := c.CreateChannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Writer.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	row := `document.querySelector('#channels-table tr[data-channel=` + jsString(ch.WriterRef.ChannelID[:8]) + `]')`
	p.waitFor(ctx, "the open channel", row+` && `+row+`.dataset.owner === 'console-go' && `+row+`.textContent.includes('connected') && `+row+`.textContent.includes('waiting') && `+row+`.querySelector('.bytes').textContent === '64.0 KiB'`)
	p.screenshot(ctx, art, "channels")

	// Queues and the DLQ browser: redrive the dead job; it is delivered
	// again (and now succeeds), and the DLQ empties on screen.
	open("queues")
	p.waitFor(ctx, "queue consq with one dead letter", consoleText(`tr[data-queue="consq"] .dlq`)+` === '1'`)
	p.click(ctx, `.dlq-browse[data-queue="consq"]`)
	p.waitFor(ctx, "the dead letter", `document.querySelector('#dlq-table tr[data-message]') && `+consoleText(`#dlq-table`)+`.includes('redrive-me') && `+consoleText(`#dlq-table`)+`.includes('cons::flaky')`)
	p.screenshot(ctx, art, "queues-dlq")
	fx.flakyOK.Store(true)
	p.click(ctx, `#dlq-table button.redrive`)
	select {
	case in := <-fx.flaky:
		if !strings.Contains(string(in), "redrive-me") {
			t.Fatalf("redriven job delivered %s", in)
		}
	case <-ctx.Done():
		t.Fatal("the redriven job was not delivered")
	}
	p.waitFor(ctx, "the emptied DLQ", `document.querySelector('#dlq-table-empty') && `+consoleText(`#dlq-msg`)+`.includes('1 redriven')`)
	p.waitFor(ctx, "the queue row's DLQ count back to 0", consoleText(`tr[data-queue="consq"] .dlq`)+` === '0'`)
	p.screenshot(ctx, art, "queues-redriven")

	// State browser: the scope the Node worker wrote, its values.
	open("state")
	p.waitFor(ctx, "scope console", `document.querySelector('#state-groups a[data-scope="console"]')`)
	p.click(ctx, `#state-groups a[data-scope="console"]`)
	p.waitFor(ctx, "its value", consoleText(`#state-out`)+`.includes('"n": 1')`)
	p.screenshot(ctx, art, "state")

	// Stream browser.
	open("streams")
	p.waitFor(ctx, "stream board › g", `document.querySelector('#streams-list a[data-stream="board"][data-group="g"]')`)
	p.click(ctx, `#streams-list a[data-stream="board"][data-group="g"]`)
	p.waitFor(ctx, "its item", consoleText(`#stream-items`)+`.includes('"v": 1')`)
	p.screenshot(ctx, art, "streams")

	// Live invocations: calls made after the page opened, with their
	// callers: the Go client's call, the Node worker's own call (through
	// cm::call), and the cron trigger's engine-made calls.
	open("invocations")
	// The stream is subscribed once its first snapshot arrived ("live").
	p.waitFor(ctx, "the feed table, subscribed", `document.querySelector('#feed-rows') && document.querySelector('#status').classList.contains('live')`)
	if _, err := c.Trigger(ctx, "cw::echo", "feed"); err != nil {
		t.Fatal(err)
	}
	fx.nodeCall(ctx, t, "state::get", map[string]any{"scope": "console", "key": "k1"})
	p.waitFor(ctx, "cw::echo called by console-go", `[...document.querySelectorAll('#feed-rows tr[data-function="cw::echo"]')].some((r) => r.textContent.includes('console-go') && r.dataset.outcome === 'ok')`)
	p.waitFor(ctx, "state::get called by the Node worker", `[...document.querySelectorAll('#feed-rows tr[data-function="state::get"]')].some((r) => r.textContent.includes('cm-modules'))`)
	p.waitFor(ctx, "the cron handler, called by the engine", `[...document.querySelectorAll('#feed-rows tr[data-function="cm::on_cron"]')].some((r) => r.textContent.includes('engine'))`)
	p.screenshot(ctx, art, "invocations")

	// Trigger form: call a Node function, show its result.
	open("trigger")
	p.mustEval(ctx, `document.querySelector('#trigger-function').value = 'cw::echo'; document.querySelector('#trigger-payload').value = '{"hello": "from the console"}'; true`, nil)
	p.click(ctx, `#trigger-submit`)
	p.waitFor(ctx, "the result", `document.querySelector('#trigger-result').className === 'ok' && `+consoleText(`#trigger-result`)+`.includes('from the console')`)
	p.mustEval(ctx, `document.querySelector('#trigger-function').value = 'cw::fail'; true`, nil)
	p.click(ctx, `#trigger-submit`)
	p.waitFor(ctx, "the error", `document.querySelector('#trigger-result').className === 'bad' && `+consoleText(`#trigger-result`)+`.includes('error')`)
	p.screenshot(ctx, art, "trigger")

	if probs := p.Problems(); len(probs) > 0 {
		t.Fatalf("the console logged errors:\n%s", strings.Join(probs, "\n"))
	}
	shots, _ := filepath.Glob(filepath.Join(art, "*.png"))
	if len(shots) != 10 {
		t.Fatalf("want 10 screenshots in %s, have %d", art, len(shots))
	}
}

// TestStreamClientBrowser (issue 11): a page served by the test opens a
// plain browser WebSocket to the stream port, joins a group, receives the
// initial sync, and sees the live update a Node SDK worker makes with
// stream::set.
func TestStreamClientBrowser(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	b := cdpStart(t)
	fx := startConsoleFixture(t, ctx)
	fx.workers(t, ctx)
	art := cdpArtifacts(t)
	fx.nodeCall(ctx, t, "stream::set", map[string]any{"stream_name": "scores", "group_id": "room", "item_id": "seed", "data": map[string]int{"score": 1}})

	page := `<!doctype html><html><head><meta charset="utf-8"><title>stream client</title></head><body>
<h1>Live scores</h1><ul id="log"></ul>
<script>
window.msgs = [];
const ws = new WebSocket(` + jsString("ws://"+fx.streams) + `);
ws.onopen = () => ws.send(JSON.stringify({ type: 'join', data: { subscriptionId: 's1', streamName: 'scores', groupId: 'room' } }));
ws.onmessage = (ev) => {
  const m = JSON.parse(ev.data);
  window.msgs.push(m);
  const li = document.createElement('li');
  li.className = m.event && m.event.type;
  li.textContent = (m.event && m.event.type) + ' ' + (m.id || '') + ' ' + JSON.stringify(m.event && m.event.data);
  document.getElementById('log').append(li);
};
</script></body></html>`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	defer srv.Close()

	p := b.newPage(ctx)
	p.navigate(ctx, srv.URL)
	p.waitFor(ctx, "the initial sync", `window.msgs.some((m) => m.streamName === 'scores' && m.groupId === 'room' && m.event.type === 'sync' && JSON.stringify(m.event.data) === '[{"score":1}]')`)
	fx.nodeCall(ctx, t, "stream::set", map[string]any{"stream_name": "scores", "group_id": "room", "item_id": "live", "data": map[string]int{"score": 42}})
	p.waitFor(ctx, "the live update", `window.msgs.some((m) => m.id === 'live' && m.event.type === 'create' && m.event.data.score === 42)`)
	p.screenshot(ctx, art, "stream-client")
	var n int
	p.mustEval(ctx, `document.querySelectorAll('#log li').length`, &n)
	if n < 2 {
		t.Fatalf("the page shows %d messages", n)
	}
	if probs := p.Problems(); len(probs) > 0 {
		t.Fatalf("the page logged errors:\n%s", strings.Join(probs, "\n"))
	}
}

var _ = bytes.NewReader

// TestConsoleBrowserLogin: with auth.tokens the console page asks for a
// token; a wrong one is refused on screen, the right one opens the live
// pages (the HttpOnly cookie carries it to the event stream).
func TestConsoleBrowserLogin(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	b := cdpStart(t)
	const tok = "browser-secret-token-0123456789"
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	must(t, os.WriteFile(cfg, []byte("auth:\n  tokens: ["+tok+"]\n"), 0o600))
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", "memory")
	line, err := e.stderr.wait(ctx, consoleRE.MatchString)
	if err != nil {
		t.Fatal(err)
	}
	console := consoleRE.FindStringSubmatch(line)[1]
	art := cdpArtifacts(t)
	p := b.newPage(ctx)
	p.navigate(ctx, console+"/#/workers")
	p.waitFor(ctx, "the login form", `document.querySelector('#login-token')`)
	p.mustEval(ctx, `document.querySelector('#login-token').value = 'wrong'; true`, nil)
	p.click(ctx, `#login-submit`)
	p.waitFor(ctx, "the refusal", consoleText(`#login-error`)+` === 'Wrong token.'`)
	p.screenshot(ctx, art, "login")
	p.mustEval(ctx, `document.querySelector('#login-token').value = `+jsString(tok)+`; true`, nil)
	p.click(ctx, `#login-submit`)
	p.waitFor(ctx, "the workers page with live data", `document.querySelector('#main').dataset.page === 'workers' && document.querySelector('tr[data-worker-name="sluice-engine"]') && document.querySelector('#status').className.includes('live')`)
	p.screenshot(ctx, art, "after-login")
	// The wrong login's 401 is the one error the page may have logged.
	for _, pr := range p.Problems() {
		if !strings.Contains(pr, "/api/login") || !strings.Contains(pr, "401") {
			t.Errorf("console error: %s", pr)
		}
	}
}
