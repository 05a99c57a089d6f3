package interop

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// The seed's HTTP examples 1 (file download) and 2 (server-sent events)
// written with the Go SDK's HTTP adapter, as the seed's Node code would be
// in Go: a standard http.Handler per example, bound to the same routes the
// SDK flavours use with WORKER_PREFIX=go. They read the environment the
// scripts read (DATA_DIR, SSE_DELAY_MS, SSE_GATE_URL), passed as "KEY=value" strings.

// goHTTPPrefix is the Go examples' WORKER_PREFIX.
const goHTTPPrefix = "go"

// registerGoHTTPSeeds registers, on c:
//
//	go.files::download  GET /go/files/:filename  Example 1
//	go.events::stream   GET /go/events/stream    Example 2
func registerGoHTTPSeeds(t testing.TB, c *sluice.Client, env ...string) {
	t.Helper()
	dataDir := envValue(env, "DATA_DIR", "/data/reports")
	delay := time.Second
	if ms, err := strconv.Atoi(envValue(env, "SSE_DELAY_MS", "1000")); err == nil {
		delay = time.Duration(ms) * time.Millisecond
	}
	gate := envValue(env, "SSE_GATE_URL", "")
	p := goHTTPPrefix

	// Example 1: status and headers, then the file streamed to the client
	// (io.Copy into the ResponseWriter reads straight into the channel's
	// frames; nothing holds the whole file).
	err := c.HandleHTTPFunc("GET /"+p+"/files/:filename", p+".files::download", func(w http.ResponseWriter, r *http.Request) {
		filename := r.PathValue("filename")
		f, err := os.Open(filepath.Join(dataDir, filepath.Base(filename)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, f)
	})
	if err != nil {
		t.Fatal(err)
	}

	// Example 2: five progress events and a done event, each flushed as
	// it is written, delay apart.
	err = c.HandleHTTPFunc("GET /"+p+"/events/stream", p+".events::stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Connection", "keep-alive")
		w.WriteHeader(http.StatusOK)
		flusher := w.(http.Flusher)

		for i := 1; i <= 5; i++ {
			data, _ := json.Marshal(struct {
				Step  int `json:"step"`
				Total int `json:"total"`
			}{i, 5})
			fmt.Fprintf(w, "id: %d\nevent: progress\ndata: %s\n\n", i, data)
			flusher.Flush()
			if gate != "" {
				if err := sseGatePause(r.Context(), gate, i); err != nil {
					// The client sees the stream end early. Not t.Errorf:
					// the gate fails this way when the test is over.
					fmt.Fprintf(os.Stderr, "go.events::stream: SSE gate, pause %d: %v\n", i, err)
					return
				}
				continue
			}
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}

		data, _ := json.Marshal(map[string]string{"message": "complete"})
		fmt.Fprintf(w, "id: 6\nevent: done\ndata: %s\n\n", data)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sseGatePause is the Go adapter's pause n with SSE_GATE_URL set (as the
// Node harness's, node-common/harness.mjs): GET <gate>?pause=n, which
// answers once the test has read event n.
func sseGatePause(ctx context.Context, gate string, n int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s?pause=%d", gate, n), nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("gate answered %s", res.Status)
	}
	return nil
}

// envValue is the value of key in env ("KEY=value" strings, last wins), or def.
func envValue(env []string, key, def string) string {
	v := def
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// uploadSize is what TestHTTPUploadEngineMemory uploads: 1 GiB, 64 MiB
// with -short.
func uploadSize() int64 {
	if testing.Short() {
		return 64 << 20
	}
	return 1 << 30
}

// engineMemBound is how much the engine's resident set may grow during the
// upload: the request body channel's buffer (64 frames of 64 KiB), socket
// buffers and runtime headroom, nowhere near the upload's size.
const engineMemBound = 48 << 20

// TestHTTPUploadEngineMemory streams uploadSize() random bytes in one POST
// through the built engine (its own process, not race-instrumented) to a Go
// function that hashes the request body, and checks the hash and byte
// count it answers. The engine process's peak resident set (the kernel's
// high-water mark, VmHWM) must stay within engineMemBound of what it was
// before the upload: the engine streams the body, it does not buffer it.
func TestHTTPUploadEngineMemory(t *testing.T) {
	if buildErr != nil {
		t.Fatalf("building the engine: %v", buildErr)
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the engine's memory")
	}
	size := uploadSize()
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-upload")
	type digest struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	err := c.HandleHTTPFunc("POST /go/upload", "go.upload::hash", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, fmt.Sprintf("after %d bytes: %v", n, err), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(digest{n, hex.EncodeToString(h.Sum(nil))})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitHTTPTrigger(ctxFor(t, startTimeout), t, c, "go.upload::hash")
	before := engineMemory(t, e.pid())

	var seed [32]byte
	_, _ = crand.Read(seed[:])
	want := sha256.New()
	req, err := http.NewRequest("POST", e.HTTPURL+"/go/upload", io.TeeReader(io.LimitReader(rand.NewChaCha8(seed), size), want))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	start := time.Now()
	res, err := seedHTTPClient(t, e).Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	elapsed := time.Since(start)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("POST: %s %q %v", res.Status, body, err)
	}
	var got digest
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("response %q: %v", body, err)
	}
	if wantSum := hex.EncodeToString(want.Sum(nil)); got.Bytes != size || got.SHA256 != wantSum {
		t.Fatalf("the function hashed %d bytes to %s, want %d bytes, %s", got.Bytes, got.SHA256, size, wantSum)
	}
	after := engineMemory(t, e.pid())
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	t.Logf("uploaded %d MiB in %v (%.0f MiB/s), SHA-256 ok; engine RSS %s before, %s peak (VmHWM), %s after",
		size>>20, elapsed.Round(time.Millisecond), float64(size)/(1<<20)/elapsed.Seconds(),
		mib(before.rss), mib(after.hwm), mib(after.rss))
	if grown := after.hwm - before.rss; grown > engineMemBound {
		t.Errorf("the engine's resident set peaked %s over its %s before a %d MiB upload (bound %s): the body is being buffered",
			mib(grown), mib(before.rss), size>>20, mib(engineMemBound))
	}
}
