package engine

import (
	"net/http"
)

// httpTriggers is what the engine needs of the HTTP trigger server.
type httpTriggers interface {
	http.Handler
	TriggerProvider
	Close()
	Active() int // requests being served
}
