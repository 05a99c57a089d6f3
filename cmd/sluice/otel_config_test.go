package main

import (
	"io"
	"maps"
	"strings"
	"testing"
)

// The standard OpenTelemetry variables configure export, below Sluice's
// own variable and flag.
func TestConfigureOTel(t *testing.T) {
	std := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://std.example:4318",
		"OTEL_EXPORTER_OTLP_HEADERS":  "api-key=s%3Dcret, x-tenant=t1",
		"OTEL_SERVICE_NAME":           "edge-engine",
	}
	cfg, _, err := configure(nil, envFunc(std), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o := cfg.OTel; o.Endpoint != "http://std.example:4318" || o.ServiceName != "edge-engine" || !maps.Equal(o.Headers, map[string]string{"api-key": "s=cret", "x-tenant": "t1"}) {
		t.Errorf("from OTEL_*: %+v", o)
	}
	env := maps.Clone(std)
	env["SLUICE_OTEL_ENDPOINT"] = "http://sluice.example:4318"
	if cfg, _, _ := configure(nil, envFunc(env), io.Discard); cfg.OTel.Endpoint != "http://sluice.example:4318" {
		t.Errorf("SLUICE_OTEL_ENDPOINT does not win: %q", cfg.OTel.Endpoint)
	}
	if cfg, _, _ := configure([]string{"--otel-endpoint", "off"}, envFunc(env), io.Discard); cfg.OTel.Endpoint != "" {
		t.Errorf("--otel-endpoint off: %q", cfg.OTel.Endpoint)
	}
	env["OTEL_SDK_DISABLED"] = "true"
	if cfg, _, _ := configure(nil, envFunc(env), io.Discard); cfg.OTel.Endpoint != "" {
		t.Errorf("OTEL_SDK_DISABLED=true leaves export on: %q", cfg.OTel.Endpoint)
	}
	if cfg, _, _ := configure(nil, envFunc(nil), io.Discard); cfg.OTel.Endpoint != "" || !cfg.OTel.EngineSpans || !cfg.OTel.ForwardSDK {
		t.Errorf("default: %+v (want off, with both parts on once an endpoint is set)", cfg.OTel)
	}
	for _, bad := range []map[string]string{
		{"SLUICE_OTEL_ENDPOINT": "localhost:4318"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"},
	} {
		if _, _, err := configure(nil, envFunc(bad), io.Discard); err == nil || !strings.Contains(err.Error(), "OTEL") && !strings.Contains(err.Error(), "otel") {
			t.Errorf("%v: err %v", bad, err)
		}
	}
}
