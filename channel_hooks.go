package sluice

import (
	"github.com/go-json-experiment/json"

	"github.com/sluicehq/sluice/wire"
)

// channelUnmarshalers returns the JSON unmarshalers that turn channel refs
// inside a handler's input into live *ChannelReader / *ChannelWriter values
// bound to the engine at baseURL, dialing with dial (a client's connection
// settings; nil: the defaults). The client adds them to the options it
// decodes handler input with.
//
// Only fields typed *ChannelReader or *ChannelWriter are materialised (a
// ChannelRef field stays a plain ref; values inside any/map[string]any stay
// maps). A ref whose direction does not match the field is an error: a
// "write" ref in a *ChannelReader field is a mix-up that would otherwise
// show up as a refused connection much later. JSON null gives a nil end.
func channelUnmarshalers(baseURL string, dial *dialOptions) *json.Unmarshalers {
	return json.JoinUnmarshalers(
		json.UnmarshalFunc(func(data []byte, v **ChannelReader) error {
			ref, null, err := parseRef(data, wire.DirRead)
			if err != nil {
				return err
			}
			if null {
				*v = nil
			} else {
				*v = newChannelReader(baseURL, dial, ref)
			}
			return nil
		}),
		json.UnmarshalFunc(func(data []byte, v **ChannelWriter) error {
			ref, null, err := parseRef(data, wire.DirWrite)
			if err != nil {
				return err
			}
			if null {
				*v = nil
			} else {
				*v = newChannelWriter(baseURL, dial, ref)
			}
			return nil
		}),
	)
}
