package sluice_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/sluicehq/sluice"
)

// ImportIn is the input of a function that reads a file from a channel:
// the caller sends the channel's reader end, which arrives as a live
// *sluice.ChannelReader.
type ImportIn struct {
	File *sluice.ChannelReader `json:"file"`
}

type ImportOut struct {
	Lines int   `json:"lines"`
	Bytes int64 `json:"bytes"`
}

// Stream a file to a function through a channel: the caller creates a
// channel, passes its reader end in the payload and copies the file into
// the writer end; the function copies out of the reader. The bytes go
// from socket to socket through the engine, never inside a JSON payload.
func ExampleChannelWriter() {
	e, stop := startExampleEngine()
	defer stop()
	ctx := context.Background()
	c, err := sluice.Connect(ctx, e.WorkerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// The consumer: io.ReadAll (like io.Copy) succeeds only if the writer
	// finished cleanly; a writer that failed gives an error, not io.EOF.
	err = sluice.Register(c, "reports::import", func(ctx context.Context, in ImportIn) (ImportOut, error) {
		defer in.File.Close()
		b, err := io.ReadAll(in.File)
		if err != nil {
			return ImportOut{}, err
		}
		return ImportOut{Lines: bytes.Count(b, []byte("\n")), Bytes: int64(len(b))}, nil
	})
	if err != nil {
		log.Fatal(err)
	}

	f, err := os.CreateTemp("", "report-*.csv")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	fmt.Fprint(f, "id,total\n1,42\n")
	f.Seek(0, io.SeekStart)

	// The producer: the writer connects on first use; Close ends the
	// stream, CloseWithError breaks it.
	ch, err := c.CreateChannel(ctx)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		defer f.Close()
		if _, err := io.Copy(ch.Writer, f); err != nil {
			ch.Writer.CloseWithError(err)
			return
		}
		ch.Writer.Close()
	}()

	out, err := sluice.Call[ImportOut](ctx, c, "reports::import", ImportIn{File: ch.Reader})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Lines, "lines,", out.Bytes, "bytes")
	// Output: 2 lines, 14 bytes
}
