package interop

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Attacks on the HTTP trigger listener (issue 9, defects 3, 10 and 11):
// path traversal through decoded parameters, in-flight requests dropped at
// shutdown, idle keep-alive connections held forever, unbounded concurrent
// requests and buffered JSON bodies.

// httpAttackClient is a net/http client whose connections end with the test.
func httpAttackClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: callTimeout}
}

// httpAttackError is the engine's JSON error envelope.
type httpAttackError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// httpAttackGet GETs url and returns the status, headers and body.
func httpAttackGet(t testing.TB, c *http.Client, url string) (int, http.Header, string) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return res.StatusCode, res.Header, string(b)
}

// TestAttackHTTPPathTraversal sends encoded separators and dot segments in
// a :param. The seed's Node download function (seed_download.mjs, iii-sdk
// 0.22.1, which opens `${DATA_DIR}/${filename}`) must not serve a file
// outside DATA_DIR, and a Go function must receive '/', '\' and NUL still
// percent-encoded and ".." segments as sent; a normal download still works.
// On 8b50cfc: /node22/files/..%2Fsecret.txt served the file next to
// DATA_DIR, and the Go function got filename "../../etc/passwd".
func TestAttackHTTPPathTraversal(t *testing.T) {
	node22 := flavourNamed("node-0.22.1")
	node22.require(t)
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const secret = "the engine must never serve this"
	if err := os.WriteFile(filepath.Join(root, "secret.txt"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "report.txt"), []byte("report"), 0o600); err != nil {
		t.Fatal(err)
	}

	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-traversal")
	// The Go function echoes what it received.
	for route, fn := range map[string]string{"GET /go/files/:filename": "go.echo::filename", "GET /go/tree/*rest": "go.echo::rest"} {
		err := c.HandleHTTPFunc(route, fn, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"filename": r.PathValue("filename"), "rest": r.PathValue("rest")})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	startWorker(t, node22, e, "seed_download.mjs", node22.Prefix, "DATA_DIR="+dataDir)
	ctx := ctxFor(t, startTimeout)
	waitHTTPTrigger(ctx, t, c, "go.echo::filename")
	waitHTTPTrigger(ctx, t, c, "go.echo::rest")
	waitHTTPTrigger(ctx, t, c, node22.Prefix+".files::download")
	hc := httpAttackClient(t)

	// The Node seed: the secret next to DATA_DIR is out of reach, whatever
	// the function then answers (it fails to open a file of that name).
	for _, p := range []string{"..%2Fsecret.txt", "%2E%2E%2Fsecret.txt", "..%5Csecret.txt", "%2E%2E"} {
		st, _, body := httpAttackGet(t, hc, e.HTTPURL+"/"+node22.Prefix+"/files/"+p)
		if strings.Contains(body, secret) {
			t.Errorf("GET /%s/files/%s = %d: the function served the file outside DATA_DIR", node22.Prefix, p, st)
		}
	}
	if st, _, body := httpAttackGet(t, hc, e.HTTPURL+"/"+node22.Prefix+"/files/report.txt"); st != 200 || body != "report" {
		t.Errorf("a normal download: %d %q", st, body)
	}

	// The Go function sees exactly what the engine passes in path_params.
	for _, c := range []struct{ path, key, want string }{
		{"/go/files/..%2F..%2Fetc%2Fpasswd", "filename", "..%2F..%2Fetc%2Fpasswd"},
		{"/go/files/..%5C..%5Cwin.ini", "filename", "..%5C..%5Cwin.ini"},
		{"/go/files/a%00b", "filename", "a%00b"},
		{"/go/files/%2E%2E", "filename", "%2E%2E"},
		{"/go/files/.%2e", "filename", ".%2e"},
		{"/go/files/a%20b.txt", "filename", "a b.txt"}, // everything else is decoded
		{"/go/tree/a/%2E%2E/%2E%2E/etc/passwd", "rest", "a/%2E%2E/%2E%2E/etc/passwd"},
		{"/go/tree/a/b%2Fc", "rest", "a/b%2Fc"},
	} {
		st, _, body := httpAttackGet(t, hc, e.HTTPURL+c.path)
		var got map[string]string
		if st != 200 || json.Unmarshal([]byte(body), &got) != nil {
			t.Errorf("GET %s = %d %q", c.path, st, body)
			continue
		}
		if got[c.key] != c.want {
			t.Errorf("GET %s: the function got %s %q, want %q", c.path, c.key, got[c.key], c.want)
		}
	}
}
