// Command go is the README's "Channels in Go" example: it serves
// "files::process", which reads a channel to its end and answers with the
// byte count and SHA-256, then streams the file named on the command line
// through a new channel to that function.
//
//	go run ./examples/channels/go report.csv
//
// A file that cannot be opened or read breaks the stream (CloseWithError):
// the handler's read fails, the call fails, and the command exits 1. It
// never reports a short stream as a complete one.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"

	"github.com/sluicehq/sluice"
)

type processIn struct {
	Reader *sluice.ChannelReader `json:"reader"` // a live reader, bound by the SDK
}

type processOut struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

func main() {
	log.SetFlags(0)
	if len(os.Args) != 2 {
		log.Fatal("usage: go run ./examples/channels/go FILE")
	}
	path := os.Args[1]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	url := os.Getenv("III_URL")
	if url == "" {
		url = "ws://127.0.0.1:49134"
	}
	c, err := sluice.Connect(ctx, url, sluice.WithName("channels-go"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// The receiving side: any worker may serve this; here it is the same one.
	err = sluice.Register(c, "files::process", func(ctx context.Context, in processIn) (processOut, error) {
		h := sha256.New()
		n, err := io.Copy(h, in.Reader) // an error if the writer failed or vanished, never a short io.EOF
		if err != nil {
			return processOut{}, err
		}
		return processOut{Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
	})
	if err != nil {
		log.Fatal(err)
	}

	// The sending side.
	ch, err := c.CreateChannel(ctx) // writer, reader and their refs
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		f, err := os.Open(path)
		if err != nil {
			ch.Writer.CloseWithError(err) // the reader's Read fails with this reason
			return
		}
		defer f.Close()
		if _, err := io.Copy(ch.Writer, f); err != nil { // 64 KiB frames, blocks under backpressure
			ch.Writer.CloseWithError(err)
			return
		}
		ch.Writer.Close() // the reader sees a clean end (io.EOF)
	}()
	res, err := sluice.Call[processOut](ctx, c, "files::process", map[string]any{"reader": ch.ReaderRef})
	if err != nil {
		log.Fatalf("files::process: %v", err)
	}
	fmt.Printf("files::process read %d bytes, sha256 %s\n", res.Bytes, res.SHA256)
}
