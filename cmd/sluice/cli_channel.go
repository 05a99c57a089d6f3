package main

// Channel subcommands: stream a file through an engine channel.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice"
)

func init() {
	clientCommands["channel"] = (*clientCmd).channel
	clientCommands["pipe"] = (*clientCmd).pipe
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress draws bytes, rate and ETA on a terminal, at most 10 times a
// second; on anything else it draws nothing.
type progress struct {
	w     io.Writer // nil: off
	total int64     // -1: unknown
	n     atomic.Int64
	start time.Time
	stop  chan struct{}
	done  chan struct{}
}

func startProgress(stderr io.Writer, total int64) *progress {
	p := &progress{total: total, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		p.w = stderr
	}
	go func() {
		defer close(p.done)
		if p.w == nil {
			<-p.stop
			return
		}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw()
			case <-p.stop:
				p.draw()
				fmt.Fprintln(p.w)
				return
			}
		}
	}()
	return p
}

func (p *progress) Write(b []byte) (int, error) { p.n.Add(int64(len(b))); return len(b), nil }

func (p *progress) end() {
	close(p.stop)
	<-p.done
}

func (p *progress) draw() {
	n := p.n.Load()
	el := time.Since(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(n) / el
	}
	line := fmt.Sprintf("\r%s  %s/s", human(n), human(int64(rate)))
	if p.total >= 0 {
		pct := 100.0
		if p.total > 0 {
			pct = float64(n) * 100 / float64(p.total)
		}
		eta := "?"
		if rate > 0 {
			eta = (time.Duration(float64(p.total-n)/rate) * time.Second).Round(time.Second).String()
		}
		line = fmt.Sprintf("\r%s / %s  %3.0f%%  %s/s  ETA %s", human(n), human(p.total), pct, human(int64(rate)), eta)
	}
	fmt.Fprintf(p.w, "%-60s", line)
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// openInput opens FILE or stdin ("-"), with its size when known (-1 else).
func openInput(name string, stdin io.Reader) (io.ReadCloser, int64, error) {
	if name == "-" {
		return io.NopCloser(stdin), -1, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, &exitError{code: 1, err: err}
	}
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, nil
}

// withUpload opens FILE (or stdin, "-"), connects within the command's
// timeout, creates a channel and runs f with them (size -1: unknown).
func (cc *clientCmd) withUpload(name string, f func(ctx context.Context, ch *sluice.Channel, in io.Reader, size int64) error) error {
	in, size, err := openInput(name, cc.stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cc.timeout)
	defer cancel()
	if err := cc.connect(ctx); err != nil {
		return err
	}
	ch, err := cc.c.CreateChannel(ctx)
	if err != nil {
		return err
	}
	return f(ctx, ch, in, size)
}

// send copies in into w with progress on a terminal, then closes w.
func (cc *clientCmd) send(w *sluice.ChannelWriter, in io.Reader, size int64) error {
	p := startProgress(cc.stderr, size)
	_, err := io.Copy(w, io.TeeReader(in, p))
	p.end()
	if err != nil {
		_ = w.CloseWithError(err)
		return err
	}
	return w.Close()
}

// channel send [FILE|-] | channel recv REF [FILE|-]
func (cc *clientCmd) channel(args []string) error {
	cc.fs.Usage = cc.usage("channel send [FILE|-] | channel recv REF [FILE|-]",
		"send: create a channel, print its reader ref (one JSON line) and stream FILE (or stdin) into it.\n"+
			"recv: read the channel named by REF (a reader ref as send printed it) into FILE (or stdout).\n"+
			"A progress line (bytes, rate, ETA) is drawn when stderr is a terminal.")
	pos, err := cc.parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) >= 1 && len(pos) <= 2 && pos[0] == "send":
		name := "-"
		if len(pos) == 2 {
			name = pos[1]
		}
		return cc.withUpload(name, func(_ context.Context, ch *sluice.Channel, in io.Reader, size int64) error {
			ref, _ := json.Marshal(ch.ReaderRef)
			fmt.Fprintln(cc.stdout, string(ref))
			return cc.send(ch.Writer, in, size)
		})
	case len(pos) >= 2 && len(pos) <= 3 && pos[0] == "recv":
		var ref sluice.ChannelRef
		if err := json.Unmarshal([]byte(pos[1]), &ref); err != nil || ref.ChannelID == "" {
			return usageErr("REF %q: want a reader ref, {\"channel_id\":…,\"access_key\":…,\"direction\":\"read\"}", pos[1])
		}
		out := cc.stdout
		if len(pos) == 3 && pos[2] != "-" {
			f, err := os.Create(pos[2])
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			defer f.Close()
			out = f
		}
		r := sluice.NewChannelReader(cc.url, ref)
		p := startProgress(cc.stderr, -1)
		_, err := io.Copy(io.MultiWriter(out, p), r)
		p.end()
		return err
	default:
		return usageErr("usage: sluice channel send [FILE|-] | sluice channel recv REF [FILE|-]")
	}
}

// pipe FUNCTION FILE [key=value ...]: the function gets {"reader": REF,
// "name": base name, "size": bytes (when known), key: value ...} and the
// file streams into the channel while it runs; its result is printed.
func (cc *clientCmd) pipe(args []string) error {
	cc.fs.Usage = cc.usage("pipe FUNCTION FILE|- [key=value ...]",
		"Call FUNCTION with {\"reader\": <channel reader ref>, \"name\": <file name>, \"size\": <bytes>, key: value...}\n"+
			"while streaming FILE (or stdin) into the channel, and print its result.\n"+
			"A progress line (bytes, rate, ETA) is drawn when stderr is a terminal.")
	pos, err := cc.parse(args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usageErr("usage: sluice pipe FUNCTION FILE|- [key=value ...]")
	}
	extra, err := cc.payload(append(pos[2:], "_=0"))
	if err != nil {
		return err
	}
	return cc.withUpload(pos[1], func(ctx context.Context, ch *sluice.Channel, in io.Reader, size int64) error {
		input := map[string]any{}
		_ = json.Unmarshal(extra, &input)
		delete(input, "_")
		input["reader"] = ch.ReaderRef
		if pos[1] != "-" {
			input["name"] = filepath.Base(pos[1])
		}
		if size >= 0 {
			input["size"] = size
		}
		sent := make(chan error, 1)
		go func() { sent <- cc.send(ch.Writer, in, size) }()
		raw, err := cc.c.Trigger(ctx, pos[0], input)
		if err != nil {
			return err
		}
		select {
		case err := <-sent:
			if err != nil {
				return fmt.Errorf("streaming %s: %w", pos[1], err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		return cc.printJSON(raw)
	})
}
