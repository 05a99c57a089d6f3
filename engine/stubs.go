package engine

import (
	"net/http"

	"github.com/sluicehq/sluice/internal/registry"
)

// httpTriggers is what the engine needs of the HTTP trigger server.
type httpTriggers interface {
	http.Handler
	TriggerProvider
	Close()
}

// TEMPORARY until internal/httptrigger lands.
type nopHTTP struct{}

func newHTTPTriggers(*Engine) httpTriggers { return nopHTTP{} }
func (nopHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.NotFound(w, r)
}
func (nopHTTP) RegisterTrigger(*registry.Trigger) error { return nil }
func (nopHTTP) UnregisterTrigger(*registry.Trigger)     {}
func (nopHTTP) Close()                                  {}
