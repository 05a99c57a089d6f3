package engine

import (
	"log/slog"

	"github.com/sluicehq/sluice/internal/channels"
)

func newChannelHub(cfg ChannelsConfig, log *slog.Logger) *channels.Hub {
	return channels.NewHub(channels.Config{
		DefaultBuffer:       cfg.DefaultBuffer,
		MaxBuffer:           cfg.MaxBuffer,
		MaxBufferBytes:      int64(cfg.MaxBufferBytes),
		MaxTotalBufferBytes: int64(cfg.MaxTotalBufferBytes),
		MaxFrameSize:        int64(cfg.MaxFrameSize),
		MaxChannels:         cfg.MaxChannels,
		MaxPerOwner:         cfg.MaxPerWorker,
		TTL:                 cfg.TTL,
	}, log)
}
