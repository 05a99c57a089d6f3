// Command download is the seed's "Use Channels" Example 1 (file download via
// an HTTP endpoint) with the Sluice Go SDK: a standard http.Handler bound to
// GET /files/:filename, the file streamed into the response.
//
//	go run ./examples/seeds/go/download   then: curl -OJ http://127.0.0.1:3111/files/quarterly-report.pdf
//
// Env: III_URL (default ws://localhost:49134), DATA_DIR (default /data/reports).
package main

import (
	"context"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/sluicehq/sluice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dataDir := envOr("DATA_DIR", "/data/reports")
	c, err := sluice.Connect(ctx, envOr("III_URL", "ws://localhost:49134"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	err = c.HandleHTTPFunc("GET /files/:filename", "files::download", func(w http.ResponseWriter, r *http.Request) {
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
		_, _ = io.Copy(w, f) // streamed in 64 KiB frames; nothing holds the whole file
	})
	if err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
