module example.com/myworker

go 1.26.0

require github.com/sluicehq/sluice v0.0.0

require (
	github.com/go-json-experiment/json v1.27.2 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
)

// Until github.com/sluicehq/sluice is published, point the module path at a
// local clone (a path relative to this go.mod, or an absolute one).
replace github.com/sluicehq/sluice => ../..
