package engine

import (
	"context"
	"net/http"

	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/httptrigger"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// httpTriggers is what the engine needs of the HTTP trigger server.
type httpTriggers interface {
	http.Handler
	TriggerProvider
	Close()
	Active() int // requests being served
	// SetRemoteRoutes serves the routes of other cluster nodes too.
	SetRemoteRoutes(ts []*registry.Trigger) []error
}

// newHTTPTriggers builds the provider of the "http" trigger type from the
// engine's config, invoker and channel hub.
func newHTTPTriggers(e *Engine) httpTriggers {
	cfg := httptrigger.Config{
		Timeout:         e.cfg.HTTP.Timeout,
		MaxJSONBody:     int64(e.cfg.HTTP.MaxJSONBody),
		MaxConcurrent:   e.cfg.HTTP.MaxConcurrentRequests,
		MaxBufferedJSON: int64(e.cfg.HTTP.MaxBufferedJSONBytes),
		Logger:          e.log.With("part", "http"),
		Observe:         e.metrics.HTTP,
		Trace:           e.httpTrace(),
		AccessLog:       e.cfg.HTTP.AccessLog,
	}
	if c := e.cfg.HTTP.CORS; c != nil {
		cfg.CORS = &httptrigger.CORS{AllowedOrigins: c.AllowedOrigins, AllowedMethods: c.AllowedMethods}
	}
	return httptrigger.New(cfg, e.inv, httpChannels{e.hub})
}

// httpChannels hands the HTTP trigger server the in-process ends of each
// request's two channels.
type httpChannels struct{ hub *channels.Hub }

// RequestBody: a LocalWriter is a httptrigger.BodyWriter and Retirer as is.
func (c httpChannels) RequestBody(n int) (wire.ChannelRef, httptrigger.BodyWriter, error) {
	ref, w, err := c.hub.CreateWithLocalWriter(n)
	if err != nil {
		return ref, nil, err
	}
	return ref, w, nil
}

func (c httpChannels) Response(n int) (wire.ChannelRef, httptrigger.ResponseReader, error) {
	ref, r, err := c.hub.CreateWithLocalReader(n)
	if err != nil {
		return ref, nil, err
	}
	return ref, &responseReader{r: r}, nil
}

// responseReader keeps each frame's pooled buffer until the next call.
type responseReader struct {
	r    *channels.LocalReader
	last channels.Frame
}

func (a *responseReader) Next(ctx context.Context) (bool, []byte, error) {
	a.last.Release()
	f, err := a.r.Next(ctx)
	a.last = f
	return f.Text, f.Data, err
}

// Close is called once Next is no longer in use.
func (a *responseReader) Close() {
	a.r.Close()
	a.last.Release()
}

// Retire implements httptrigger.Retirer.
func (a *responseReader) Retire() { a.r.Retire() }

// OnReady implements httptrigger.ReadyNotifier.
func (a *responseReader) OnReady(f func()) { a.r.OnReady(f) }

var (
	_ httptrigger.BodyWriter = (*channels.LocalWriter)(nil)
	_ httptrigger.Retirer    = (*channels.LocalWriter)(nil)
	_ httptrigger.FrameTrier = (*channels.LocalWriter)(nil)
	_ httptrigger.Retirer    = (*responseReader)(nil)

	_ httptrigger.ReadyNotifier = (*responseReader)(nil)
)
