package main

import (
	"io"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

// TestConfigureSizeUnits: sizes take binary units in the file, the
// environment and flags alike, and -h says so.
func TestConfigureSizeUnits(t *testing.T) {
	path := writeConfig(t, "max_message_size: 32MiB\nchannels:\n  max_frame_size: 2MiB\nhttp:\n  max_json_body: 512KiB\n")
	cfg, _, err := configure([]string{"--config", path}, envFunc(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxMessageSize != 32<<20 || cfg.Channels.MaxFrameSize != 2<<20 || cfg.HTTP.MaxJSONBody != 512<<10 {
		t.Errorf("file: %v %v %v", cfg.MaxMessageSize, cfg.Channels.MaxFrameSize, cfg.HTTP.MaxJSONBody)
	}
	cfg, _, err = configure([]string{"--max-frame-size", "64KiB"}, envFunc(map[string]string{"SLUICE_MAX_MESSAGE_SIZE": "1GiB", "SLUICE_MAX_FRAME_SIZE": "1MiB"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxMessageSize != 1<<30 || cfg.Channels.MaxFrameSize != 64<<10 {
		t.Errorf("environment and flag: %v %v", cfg.MaxMessageSize, cfg.Channels.MaxFrameSize)
	}
	cfg, _, err = configure([]string{"--max-message-size", "4096"}, envFunc(nil), io.Discard)
	if err != nil || cfg.MaxMessageSize != engine.ByteSize(4096) {
		t.Errorf("plain bytes: %v %v", cfg.MaxMessageSize, err)
	}

	var help strings.Builder
	_ = run(boundedCtx(t), []string{"serve", "-h"}, envFunc(nil), &help, &help)
	for _, want := range []string{"16MiB", "64KiB"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("serve -h does not show the size form %s:\n%s", want, help.String())
		}
	}
}
