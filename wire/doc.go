// Package wire holds the iii worker protocol: the JSON messages exchanged on
// the worker socket, the channel reference format, the HTTP trigger payload
// and the error codes. It does no I/O, so the engine and the Go SDK share it
// and it can be fuzzed in isolation.
//
// Decoding is lenient (unknown fields and types are ignored, a missing "data"
// is read as null, duplicate keys are tolerated) and encoding is strict
// (absent optionals are omitted, never null), as the official SDKs need; see
// docs/protocol.md.
package wire
