package sluice_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/channels"
)

// Stream a file through a channel: io.Copy into the writer on one side,
// io.Copy out of the reader on the other. In a worker the ends come from
// client.CreateChannel, or arrive as *sluice.ChannelReader /
// *sluice.ChannelWriter fields of a handler's input; here a bare channel
// hub stands in for the engine.
func ExampleChannelWriter() {
	hub := channels.NewHub(channels.Config{}, nil)
	mux := http.NewServeMux()
	mux.Handle("/ws/channels/", hub)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	engineURL := "ws" + strings.TrimPrefix(srv.URL, "http")
	refs, err := hub.Create(0)
	if err != nil {
		panic(err)
	}

	f, err := os.CreateTemp("", "report-*.csv")
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	fmt.Fprint(f, "id,total\n1,42\n")
	f.Seek(0, io.SeekStart)

	// Producer: the writer connects on first use; Close ends the stream,
	// CloseWithError breaks it (the reader then gets an error, not io.EOF).
	writer := sluice.NewChannelWriter(engineURL, refs.Writer)
	go func() {
		defer f.Close()
		if _, err := io.Copy(writer, f); err != nil {
			writer.CloseWithError(err)
			return
		}
		writer.Close()
	}()

	// Consumer: io.Copy returns nil only if the writer finished cleanly.
	reader := sluice.NewChannelReader(engineURL, refs.Reader)
	n, err := io.Copy(os.Stdout, reader)
	fmt.Println(n, err)
	// Output:
	// id,total
	// 1,42
	// 14 <nil>
}
