package sluice_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/testtls"
)

// startTLSEngine starts an engine serving both listeners over TLS with a
// certificate from a throwaway CA.
func startTLSEngine(t *testing.T) (*engine.Engine, testtls.Files) {
	t.Helper()
	files, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := startEngine(t, func(cfg *engine.Config) {
		cfg.TLS = engine.TLSConfig{CertFile: files.CertFile, KeyFile: files.KeyFile}
	})
	if !strings.HasPrefix(e.WorkerURL(), "wss://127.0.0.1:") || !strings.HasPrefix(e.HTTPURL(), "https://127.0.0.1:") {
		t.Fatalf("TLS engine URLs: %s, %s", e.WorkerURL(), e.HTTPURL())
	}
	return e, files
}

func connectTLS(t *testing.T, e *engine.Engine, files testtls.Files, name string, opts ...sluice.Option) *sluice.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	c, err := sluice.Connect(ctx, e.WorkerURL(), append([]sluice.Option{sluice.WithName(name), sluice.WithLogger(quietLogger()),
		sluice.WithTLSConfig(files.ClientConfig())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// WithTLSConfig's CA is trusted by the worker socket and by every channel
// end the client hands out: created ends, ends decoded from handler input,
// and the request and response channels of the HTTP adapter. Without it
// the client does not trust the engine.
func TestTLSConnectWithCustomCA(t *testing.T) {
	e, files := startTLSEngine(t)

	// An untrusted certificate is not retried: Connect fails at once,
	// long before this bound.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if c, err := sluice.Connect(ctx, e.WorkerURL(), sluice.WithLogger(quietLogger())); err == nil {
		c.Close()
		t.Fatal("connected to an engine whose CA the client does not trust")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("connecting without the CA: %v, want a certificate error", err)
	} else if ctx.Err() != nil {
		t.Errorf("Connect retried an untrusted certificate until its context ended (%v)", time.Since(start))
	}

	a := connectTLS(t, e, files, "a")
	b := connectTLS(t, e, files, "b")
	must(t, sluice.Register(b, "b::digest", func(ctx context.Context, in struct {
		R *sluice.ChannelReader `json:"r"`
	}) (string, error) {
		h := sha256.New()
		if _, err := io.Copy(h, in.R); err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}))
	must(t, b.HandleHTTPFunc("POST /echo", "b::echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, r.Body)
	}))
	if err := b.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}

	data := make([]byte, 1<<20+7)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	sum := sha256.Sum256(data)

	ctx, cancel = context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	ch, err := a.CreateChannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := ch.Writer.Write(data)
		if cerr := ch.Writer.Close(); err == nil {
			err = cerr
		}
		wrote <- err
	}()
	got, err := sluice.Call[string](ctx, a, "b::digest", map[string]any{"r": ch.Reader})
	if err != nil {
		t.Fatalf("b::digest over wss: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("writing the channel over wss: %v", err)
	}
	if got != hex.EncodeToString(sum[:]) {
		t.Fatalf("b::digest = %s, want %x", got, sum)
	}

	tr := &http.Transport{TLSClientConfig: files.ClientConfig()}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: waitFor}
	res, err := hc.Post(e.HTTPURL()+"/echo", "application/octet-stream", io.MultiReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("POST /echo over https: %d, %d bytes (want %d), %v", res.StatusCode, len(body), len(data), err)
	}
	if res.TLS == nil {
		t.Fatal("POST /echo: the response did not come over TLS")
	}
}

// Over wss:// a call alone in flight reads its own result, as over ws://
// (ctlReader reads the control socket on both), and a caller blocked
// reading for itself is interrupted by its context; the socket reads on
// where that read stopped. On 29b91b1 a wss:// socket was read by a
// background reader at all times: the reader role was never left free.
func TestTLSCallerReadsOwnResult(t *testing.T) {
	e, files := startTLSEngine(t)
	b := connectTLS(t, e, files, "b")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	must(t, sluice.Register(b, "b::echo", func(_ context.Context, in int) (int, error) { return in, nil }))
	must(t, sluice.Register(b, "b::hold", func(ctx context.Context, in int) (int, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return in, nil
	}))
	if err := b.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	a := connectTLS(t, e, files, "a", sluice.WithFreeRoleKept())
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	for i := range 3 {
		if got, err := sluice.Call[int](ctx, a, "b::echo", i); err != nil || got != i {
			t.Fatalf("call %d: %d, %v", i, got, err)
		}
		if !sluice.ReaderFree(a) {
			t.Fatalf("after call %d over wss:// the reader role is not free: a background reader holds it", i)
		}
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := sluice.Call[int](short, a, "b::hold", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call past its context: %v, want context.DeadlineExceeded", err)
	}
	if got, err := sluice.Call[int](ctx, a, "b::echo", 7); err != nil || got != 7 {
		t.Fatalf("the call after the interrupted one: %d, %v", got, err)
	}
}
