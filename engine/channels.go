package engine

import (
	"log/slog"

	"github.com/sluicehq/sluice/internal/channels"
)

func newChannelHub(cfg ChannelsConfig, log *slog.Logger) *channels.Hub {
	return channels.NewHub(channels.Config{
		DefaultBuffer: cfg.DefaultBuffer,
		MaxBuffer:     cfg.MaxBuffer,
		MaxFrameSize:  int64(cfg.MaxFrameSize),
		MaxChannels:   cfg.MaxChannels,
		TTL:           cfg.TTL,
	}, log)
}
