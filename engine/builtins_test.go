package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/wire"
)

// Every Validate rule names the setting it refuses.
func TestValidateNamesTheSetting(t *testing.T) {
	for _, c := range []struct {
		key    string
		mutate func(*Config)
	}{
		{"addr", func(c *Config) { c.Addr = "" }},
		{"max_message_size", func(c *Config) { c.MaxMessageSize = 10 }},
		{"channel buffers", func(c *Config) { c.Channels.DefaultBuffer = 0 }},
		{"channel buffers", func(c *Config) { c.Channels.MaxBuffer = 0 }},
		{"channels.max_frame_size", func(c *Config) { c.Channels.MaxFrameSize = 10 }},
		{"channels.ttl", func(c *Config) { c.Channels.TTL = 0 }},
		{"channels.max_channels", func(c *Config) { c.Channels.MaxChannels = 0 }},
		{"channels.max_per_worker", func(c *Config) { c.Channels.MaxPerWorker = 0 }},
		{"channels.max_buffer_bytes", func(c *Config) { c.Channels.MaxBufferBytes = 1000 }},
		{"channels.max_total_buffer_bytes", func(c *Config) { c.Channels.MaxTotalBufferBytes = c.Channels.MaxFrameSize - 1 }},
		{"http.timeout", func(c *Config) { c.HTTP.Timeout = 0 }},
		{"http.max_json_body", func(c *Config) { c.HTTP.MaxJSONBody = -1 }},
		{"http.idle_timeout", func(c *Config) { c.HTTP.IdleTimeout = 0 }},
		{"http.max_concurrent_requests", func(c *Config) { c.HTTP.MaxConcurrentRequests = 0 }},
		{"http.max_buffered_json_bytes", func(c *Config) { c.HTTP.MaxBufferedJSONBytes = c.HTTP.MaxJSONBody - 1 }},
		{"shutdown_timeout", func(c *Config) { c.ShutdownTimeout = 0 }},
		{"tls.cert_file and tls.key_file", func(c *Config) { c.TLS.CertFile = "cert.pem" }},
		{"max_id_length", func(c *Config) { c.MaxIDLength = 10 }},
	} {
		cfg := DefaultConfig()
		c.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: Validate() = %v, want an error naming it", c.key, err)
		}
		if _, err := New(cfg, testLogger(t)); err == nil {
			t.Errorf("%s: New accepted a config Validate refuses", c.key)
		}
	}
	if err := (func() *Config { c := DefaultConfig(); return &c }()).Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
}

// engine::channels::create hands out a matching writer/reader pair and the
// channel counts until it ends.
func TestChannelsCreateBuiltin(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	var out wire.CreateChannelResult
	mustResult(t, w.call("c1", wire.FnChannelsCreate, `{"buffer_size":8}`), &out)
	if out.Writer.ChannelID == "" || out.Writer.ChannelID != out.Reader.ChannelID || out.Writer.AccessKey != out.Reader.AccessKey ||
		out.Writer.Direction != "write" || out.Reader.Direction != "read" {
		t.Fatalf("channels::create = %+v", out)
	}
	if n := e.Stats().Channels; n != 1 {
		t.Fatalf("Stats().Channels = %d, want 1", n)
	}
	if res := w.call("c2", wire.FnChannelsCreate, `{"buffer_size":"big"}`); res.Error == nil || res.Error.Code != wire.CodeDeserializationError {
		t.Fatalf("channels::create with a bad buffer_size: %+v", res)
	}
}

// engine::channels::create counts a worker's open channels against its
// quota (channel_limit_reached naming the setting beyond it); when the
// worker disconnects, the channels it created that no end connected to
// are released.
func TestChannelsCreateQuota(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.Channels.MaxPerWorker = 2 })
	other := dialRaw(t, e)
	other.sendJSON(`{"type":"registerfunction","id":"on::workers"}`)
	other.sendJSON(`{"type":"registertrigger","id":"wa","trigger_type":"engine::workers-available","function_id":"on::workers","config":{}}`)
	waitFunction(t, other, "on::workers")
	hog := dialRaw(t, e)
	other.awaitInvoke("on::workers", func(m wire.Message) bool { return strings.Contains(string(m.Data), `"worker_connected"`) })
	for i := range 2 {
		if m := hog.call("h"+string(rune('0'+i)), wire.FnChannelsCreate, `{}`); m.Error != nil {
			t.Fatalf("channel %d within the quota: %+v", i, m.Error)
		}
	}
	m := hog.call("h2", wire.FnChannelsCreate, `{}`)
	if m.Error == nil || m.Error.Code != wire.CodeChannelLimit || !strings.Contains(m.Error.Message, "channels.max_per_worker") {
		t.Fatalf("channel over the quota: %+v", m.Error)
	}
	if m := other.call("o1", wire.FnChannelsCreate, `{}`); m.Error != nil {
		t.Fatalf("another worker while the hog is at its quota: %+v", m.Error)
	}
	if n := e.hub.Owned(hog.id); n != 2 {
		t.Fatalf("the hog owns %d channels, want 2", n)
	}
	hog.ws.Close()
	// The event fires after the disconnect's cleanup.
	other.awaitInvoke("on::workers", func(m wire.Message) bool { return strings.Contains(string(m.Data), `"worker_disconnected"`) })
	if s := e.Stats(); s.Channels != 1 {
		t.Fatalf("after the hog left: %+v, want 1 channel (the other worker's)", s)
	}
	if n := e.hub.Owned(hog.id); n != 0 {
		t.Fatalf("the departed hog still owns %d channels", n)
	}
}

// Telemetry frames on a worker socket are dropped without disturbing its
// calls; the /otel socket takes frames and is closed at shutdown.
func TestTelemetryDiscarded(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	for _, prefix := range []string{"OTLP", "MTRC", "LOGS"} {
		if err := w.ws.WriteMessage(websocket.BinaryMessage, []byte(prefix+`{"resourceSpans":[]}`)); err != nil {
			t.Fatal(err)
		}
	}
	if res := w.call("after", wire.FnFunctionsList, `{}`); res.Error != nil {
		t.Fatalf("a call after telemetry frames: %+v", res)
	}

	otel, _, err := websocket.DefaultDialer.Dial(e.WorkerURL()+"/otel", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer otel.Close()
	for range 3 {
		if err := otel.WriteMessage(websocket.BinaryMessage, []byte("OTLP{}")); err != nil {
			t.Fatal(err)
		}
	}
	if st := e.Stats(); st.Workers != 1 {
		t.Fatalf("the telemetry socket counted as a worker: %+v", st)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	}()
	_ = otel.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = otel.ReadMessage()
	if code, _, ok := closeCode(err); !ok || code != websocket.CloseGoingAway {
		t.Fatalf("the telemetry socket at shutdown: %v, want close 1001", err)
	}
}

// engine::registered-triggers::info returns a binding with its type and
// function; an unknown id is NOT_FOUND.
func TestRegisteredTriggersInfo(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.announce("info-worker")
	w.sendJSON(`{"type":"registerfunction","id":"f::watched","description":"watches"}`)
	w.sendJSON(`{"type":"registertrigger","id":"tr-info","trigger_type":"engine::workers-available","function_id":"f::watched","config":{"k":1},"metadata":{"m":2}}`)
	waitFunction(t, w, "f::watched")
	var out struct {
		ID          string         `json:"id"`
		TriggerType string         `json:"trigger_type"`
		FunctionID  string         `json:"function_id"`
		WorkerName  string         `json:"worker_name"`
		Config      map[string]any `json:"config"`
		Metadata    map[string]any `json:"metadata"`
		Trigger     *struct {
			ID            string `json:"id"`
			InstanceCount int    `json:"instance_count"`
		} `json:"trigger"`
		Function *struct {
			FunctionID  string `json:"function_id"`
			Description string `json:"description"`
		} `json:"function"`
	}
	mustResult(t, w.callSkipping("i1", wire.FnRegisteredTriggersInfo, `{"id":"tr-info"}`), &out)
	if out.ID != "tr-info" || out.TriggerType != wire.TriggerTypeWorkersAvailable || out.FunctionID != "f::watched" || out.WorkerName != "info-worker" ||
		out.Config["k"] != 1.0 || out.Metadata["m"] != 2.0 || out.Trigger == nil || out.Trigger.InstanceCount != 1 ||
		out.Function == nil || out.Function.Description != "watches" {
		t.Fatalf("registered-triggers::info = %+v", out)
	}
	if res := w.callSkipping("i2", wire.FnRegisteredTriggersInfo, `{"id":"nope"}`); res.Error == nil || res.Error.Code != wire.CodeNotFound {
		t.Fatalf("registered-triggers::info of an unknown id: %+v", res)
	}
}
