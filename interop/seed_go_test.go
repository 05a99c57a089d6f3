package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/sluicehq/sluice"
)

// The seed's channel examples 3 and 4 ("Use Channels": streaming data
// between functions; bidirectional streaming with progress), written with
// the Go SDK. The function ids are prefixed with "go.", as the SDK
// flavours' are with "<WORKER_PREFIX>.", and each example takes an optional
// extra input naming its counterpart, so that a Go producer can feed a
// Node or Python consumer and a Go coordinator a Node transform worker.

// goSeedFunctions are the functions registerGoSeeds registers.
var goSeedFunctions = []string{
	"go.pipeline::consumer", "go.pipeline::producer",
	"go.transform::worker", "go.transform::coordinator",
}

type pipelineRecord struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

type consumerIn struct {
	Label  string                `json:"label"`
	Reader *sluice.ChannelReader `json:"reader"`
}

type consumerOut struct {
	Label string  `json:"label"`
	Count int     `json:"count"`
	Total float64 `json:"total"`
}

type producerIn struct {
	Records []pipelineRecord `json:"records"`
	// Consumer is the consumer to trigger (not in the seed; default
	// go.pipeline::consumer).
	Consumer string `json:"consumer"`
}

type workerIn struct {
	Reader *sluice.ChannelReader `json:"reader"`
	Writer *sluice.ChannelWriter `json:"writer"`
}

type coordinatorIn struct {
	Text string `json:"text"`
	// Worker is the transform worker to trigger (not in the seed; default
	// go.transform::worker).
	Worker string `json:"worker"`
}

type coordinatorOut struct {
	Result   string            `json:"result"`
	Progress []json.RawMessage `json:"progress"`
}

// registerGoSeeds registers Examples 3 and 4 in Go on c.
func registerGoSeeds(t testing.TB, c *sluice.Client) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Example 3: the consumer reads the whole stream and sums the records.
	must(sluice.Register(c, "go.pipeline::consumer", func(ctx context.Context, in consumerIn) (consumerOut, error) {
		if in.Reader == nil {
			return consumerOut{}, errors.New("no reader in the input")
		}
		raw, err := in.Reader.ReadAll()
		if err != nil {
			return consumerOut{}, err
		}
		var records []pipelineRecord
		if err := json.Unmarshal(raw, &records); err != nil {
			return consumerOut{}, err
		}
		var total float64
		for _, r := range records {
			total += r.Value
		}
		return consumerOut{Label: in.Label, Count: len(records), Total: total}, nil
	}))

	// Example 3: the producer creates a channel, writes the records as JSON
	// and triggers the consumer with the reader's ref.
	must(sluice.Register(c, "go.pipeline::producer", func(ctx context.Context, in producerIn) (json.RawMessage, error) {
		consumer := in.Consumer
		if consumer == "" {
			consumer = "go.pipeline::consumer"
		}
		ch, err := c.CreateChannel(ctx)
		if err != nil {
			return nil, err
		}
		payload, err := json.Marshal(in.Records)
		if err != nil {
			return nil, err
		}
		written := make(chan error, 1)
		go func() {
			_, err := ch.Writer.Write(payload)
			if err == nil {
				err = ch.Writer.Close()
			}
			written <- err
		}()
		res, err := c.Trigger(ctx, consumer, map[string]any{"label": "batch-001", "reader": ch.ReaderRef})
		if werr := <-written; werr != nil && err == nil {
			err = fmt.Errorf("writing the records: %w", werr)
		}
		return res, err
	}))

	// Example 4: the worker reads its input, reports progress per chunk as
	// a text message, and writes the input upper-cased.
	must(sluice.Register(c, "go.transform::worker", func(ctx context.Context, in workerIn) (map[string]string, error) {
		if in.Reader == nil || in.Writer == nil {
			return nil, errors.New("reader and writer are required")
		}
		var data bytes.Buffer
		buf := make([]byte, 64<<10)
		count := 0
		for {
			n, err := in.Reader.Read(buf)
			if n > 0 {
				data.Write(buf[:n])
				count++
				msg, _ := json.Marshal(map[string]any{"type": "progress", "chunks": count})
				if err := in.Writer.SendMessage(string(msg)); err != nil {
					return nil, err
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				_ = in.Writer.CloseWithError(err)
				return nil, err
			}
		}
		if _, err := in.Writer.Write(bytes.ToUpper(data.Bytes())); err != nil {
			return nil, err
		}
		if err := in.Writer.Close(); err != nil {
			return nil, err
		}
		return map[string]string{"status": "done"}, nil
	}))

	// Example 4: the coordinator creates an input and an output channel,
	// sends the text, triggers the worker with the input's reader and the
	// output's writer, and collects the progress messages and the result.
	must(sluice.Register(c, "go.transform::coordinator", func(ctx context.Context, in coordinatorIn) (coordinatorOut, error) {
		worker := in.Worker
		if worker == "" {
			worker = "go.transform::worker"
		}
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

		written := make(chan error, 1)
		go func() {
			_, err := io.Copy(input.Writer, strings.NewReader(in.Text))
			if err == nil {
				err = input.Writer.Close()
			}
			written <- err
		}()
		type triggered struct {
			res json.RawMessage
			err error
		}
		done := make(chan triggered, 1)
		go func() {
			res, err := c.Trigger(ctx, worker, map[string]any{"reader": input.ReaderRef, "writer": output.WriterRef})
			done <- triggered{res, err}
		}()
		type read struct {
			data []byte
			err  error
		}
		results := make(chan read, 1)
		go func() {
			data, err := output.Reader.ReadAll()
			results <- read{data, err}
		}()
		tr := <-done
		if tr.err != nil {
			// The worker may never have opened the output: stop waiting for it.
			_ = output.Reader.Close()
			<-results
			<-written
			return coordinatorOut{}, tr.err
		}
		r := <-results
		if r.err != nil {
			return coordinatorOut{}, fmt.Errorf("reading the result: %w", r.err)
		}
		if werr := <-written; werr != nil {
			return coordinatorOut{}, fmt.Errorf("writing the input: %w", werr)
		}
		out.Result = string(r.data)
		return out, nil
	}))
}
