package wire

// Channel directions, from the point of view of the ref's holder.
const (
	DirRead  = "read"
	DirWrite = "write"
)

// FrameSize is the largest binary frame SDK writers send on a channel.
const FrameSize = 64 * 1024

// Close codes the engine uses on channel sockets.
const (
	// CloseNormal ends a reader whose writer finished cleanly.
	CloseNormal = 1000
	// CloseGoingAway is sent when the engine shuts down.
	CloseGoingAway = 1001
	// CloseInternal ends a reader whose writer vanished, or a socket the
	// engine had to abort; the reason says why.
	CloseInternal = 1011
)

// ChannelRef is the JSON token that names one end of a channel
// (StreamChannelRef in the official SDKs).
type ChannelRef struct {
	ChannelID string `json:"channel_id"`
	AccessKey string `json:"access_key"`
	Direction string `json:"direction"`
}

// CreateChannelInput is the input of engine::channels::create.
type CreateChannelInput struct {
	BufferSize *int `json:"buffer_size"`
}

// CreateChannelResult is the output of engine::channels::create.
type CreateChannelResult struct {
	Writer ChannelRef `json:"writer"`
	Reader ChannelRef `json:"reader"`
}

// Engine function ids.
const (
	FnChannelsCreate              = "engine::channels::create"
	FnWorkersRegister             = "engine::workers::register"
	FnFunctionsList               = "engine::functions::list"
	FnFunctionsInfo               = "engine::functions::info"
	FnWorkersList                 = "engine::workers::list"
	FnWorkersInfo                 = "engine::workers::info"
	FnTriggersList                = "engine::triggers::list"
	FnTriggersInfo                = "engine::triggers::info"
	FnRegisteredTriggersList      = "engine::registered-triggers::list"
	FnRegisteredTriggersInfo      = "engine::registered-triggers::info"
	FnRegisterTrigger             = "engine::register_trigger"
	FnUnregisterTrigger           = "engine::unregister_trigger"
	TriggerTypeWorkersAvailable   = "engine::workers-available"
	TriggerTypeFunctionsAvailable = "engine::functions-available"
	TriggerTypeHTTP               = "http"
)
