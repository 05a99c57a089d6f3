package engine

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// channelHub is what the engine needs of the channel hub.
type channelHub interface {
	http.Handler
	Create(bufferSize int) (wire.CreateChannelResult, error)
	Shutdown(ctx context.Context) error
	Len() int
}

// httpTriggers is what the engine needs of the HTTP trigger server.
type httpTriggers interface {
	http.Handler
	TriggerProvider
	Close()
}

// TEMPORARY until internal/channels and internal/httptrigger land.
type nopHub struct{}

func newChannelHub(ChannelsConfig, *slog.Logger) channelHub { return nopHub{} }
func (nopHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "Channel not found", 404)
}
func (nopHub) Create(int) (wire.CreateChannelResult, error) { return wire.CreateChannelResult{}, nil }
func (nopHub) Shutdown(context.Context) error               { return nil }
func (nopHub) Len() int                                     { return 0 }

type nopHTTP struct{}

func newHTTPTriggers(*Engine) httpTriggers { return nopHTTP{} }
func (nopHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.NotFound(w, r)
}
func (nopHTTP) RegisterTrigger(*registry.Trigger) error { return nil }
func (nopHTTP) UnregisterTrigger(*registry.Trigger)     {}
func (nopHTTP) Close()                                  {}
