package sluice_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// BenchmarkInvokeSequentialOTel is BenchmarkInvokeSequential with OTLP
// export on (every invocation a span, exported in batches to a collector
// in this process that reads and discards them); compare with
// BenchmarkInvokeSequential for what tracing costs a round trip.
func BenchmarkInvokeSequentialOTel(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	benchInvokeSequential(b, func(c *engine.Config) {
		c.OTel.Endpoint = srv.URL
		c.OTel.FlushInterval = 100 * time.Millisecond
	})
}
