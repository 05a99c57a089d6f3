// Command transform is the seed's "Use Channels" Example 4 (bidirectional
// streaming with progress) with the Sluice Go SDK: transform::coordinator
// sends text through one channel to transform::worker, which answers on a
// second channel with the text upper-cased and a progress message (a text
// frame) per chunk it read.
//
//	go run ./examples/seeds/go/transform   registers both, calls the coordinator
//	                                       once, prints the answer, keeps serving
//
// Env: III_URL (default ws://localhost:49134).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sluicehq/sluice"
)

type workerIn struct {
	Reader *sluice.ChannelReader `json:"reader"`
	Writer *sluice.ChannelWriter `json:"writer"`
}

type coordinatorIn struct {
	Text string `json:"text"`
}

type coordinatorOut struct {
	Result   string            `json:"result"`
	Progress []json.RawMessage `json:"progress"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	url := os.Getenv("III_URL")
	if url == "" {
		url = "ws://localhost:49134"
	}
	c, err := sluice.Connect(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// The worker reads its input, reports progress per chunk as a text
	// message, and writes the input upper-cased.
	err = sluice.Register(c, "transform::worker", func(ctx context.Context, in workerIn) (map[string]string, error) {
		if in.Reader == nil || in.Writer == nil {
			return nil, errors.New("reader and writer are required")
		}
		var data bytes.Buffer
		buf := make([]byte, 64<<10)
		for count := 1; ; count++ {
			n, err := in.Reader.Read(buf)
			if n > 0 {
				data.Write(buf[:n])
				msg, _ := json.Marshal(map[string]any{"type": "progress", "chunks": count})
				if err := in.Writer.SendMessage(string(msg)); err != nil {
					return nil, err
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				in.Writer.CloseWithError(err) // the coordinator's read fails too
				return nil, err
			}
		}
		if _, err := in.Writer.Write(bytes.ToUpper(data.Bytes())); err != nil {
			return nil, err
		}
		return map[string]string{"status": "done"}, in.Writer.Close()
	})
	if err != nil {
		log.Fatal(err)
	}

	// The coordinator sends the text on one channel, calls the worker with
	// that channel's reader and a second channel's writer, and collects the
	// progress messages and the result from the second channel.
	err = sluice.Register(c, "transform::coordinator", func(ctx context.Context, in coordinatorIn) (coordinatorOut, error) {
		input, err := c.CreateChannel(ctx)
		if err != nil {
			return coordinatorOut{}, err
		}
		output, err := c.CreateChannel(ctx)
		if err != nil {
			return coordinatorOut{}, err
		}
		out := coordinatorOut{Progress: []json.RawMessage{}}
		output.Reader.OnMessage(func(msg string) { out.Progress = append(out.Progress, json.RawMessage(msg)) })

		go func() {
			if _, err := io.Copy(input.Writer, strings.NewReader(in.Text)); err != nil {
				input.Writer.CloseWithError(err)
				return
			}
			input.Writer.Close()
		}()
		called := make(chan error, 1)
		go func() {
			_, err := c.Trigger(ctx, "transform::worker", map[string]any{"reader": input.ReaderRef, "writer": output.WriterRef})
			if err != nil {
				output.Reader.Close() // the worker may never open the output: stop waiting for it
			}
			called <- err
		}()
		result, rerr := output.Reader.ReadAll()
		if err := <-called; err != nil {
			return coordinatorOut{}, err
		}
		if rerr != nil {
			return coordinatorOut{}, fmt.Errorf("reading the result: %w", rerr)
		}
		out.Result = string(result)
		return out, nil
	})
	if err != nil {
		log.Fatal(err)
	}

	// Try it (not part of the seed).
	res, err := sluice.Call[json.RawMessage](ctx, c, "transform::coordinator", coordinatorIn{Text: "hello, sluice"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("transform::coordinator answered:", string(res))
	<-ctx.Done()
}
