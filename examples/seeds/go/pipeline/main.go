// Command pipeline is the seed's "Use Channels" Example 3 (streaming data
// between functions) with the Sluice Go SDK: pipeline::producer writes the
// records it is given into a new channel as JSON and calls
// pipeline::consumer with the channel's reader, which counts and sums them.
//
//	go run ./examples/seeds/go/pipeline   registers both, calls the producer once,
//	                                      prints the answer, keeps serving
//
// Env: III_URL (default ws://localhost:49134).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicehq/sluice"
)

type record struct {
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
	Records []record `json:"records"`
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

	// The consumer reads the whole stream and sums the records.
	err = sluice.Register(c, "pipeline::consumer", func(ctx context.Context, in consumerIn) (consumerOut, error) {
		if in.Reader == nil {
			return consumerOut{}, errors.New("no reader in the input")
		}
		raw, err := in.Reader.ReadAll() // an error, not a short read, if the writer failed
		if err != nil {
			return consumerOut{}, err
		}
		var records []record
		if err := json.Unmarshal(raw, &records); err != nil {
			return consumerOut{}, err
		}
		var total float64
		for _, r := range records {
			total += r.Value
		}
		return consumerOut{Label: in.Label, Count: len(records), Total: total}, nil
	})
	if err != nil {
		log.Fatal(err)
	}

	// The producer writes the records into a new channel while the
	// consumer, called with the channel's reader, reads them.
	err = sluice.Register(c, "pipeline::producer", func(ctx context.Context, in producerIn) (consumerOut, error) {
		ch, err := c.CreateChannel(ctx)
		if err != nil {
			return consumerOut{}, err
		}
		payload, err := json.Marshal(in.Records)
		if err != nil {
			return consumerOut{}, err
		}
		written := make(chan error, 1)
		go func() {
			if _, err := ch.Writer.Write(payload); err != nil {
				ch.Writer.CloseWithError(err)
				written <- err
				return
			}
			written <- ch.Writer.Close()
		}()
		res, err := sluice.Call[consumerOut](ctx, c, "pipeline::consumer", map[string]any{"label": "batch-001", "reader": ch.ReaderRef})
		if werr := <-written; werr != nil && err == nil {
			err = fmt.Errorf("writing the records: %w", werr)
		}
		return res, err
	})
	if err != nil {
		log.Fatal(err)
	}

	// Try it (not part of the seed).
	records := []record{{"a", 10}, {"b", 20}, {"c", 30}}
	res, err := sluice.Call[json.RawMessage](ctx, c, "pipeline::producer", producerIn{Records: records})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pipeline::producer answered:", string(res))
	<-ctx.Done()
}
