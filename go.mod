module github.com/sluicehq/sluice

go 1.26

require (
	github.com/go-json-experiment/json v1.27.2
	github.com/google/uuid v1.6.0
	github.com/gorilla/websocket v1.5.3
	go.yaml.in/yaml/v4 v4.0.0
)
