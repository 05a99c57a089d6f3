// Package interop holds the interoperability tests of Sluice: the official
// iii SDKs (npm iii-sdk 0.11.6 and 0.22.1, PyPI iii-sdk 0.25.0 and 0.11.6)
// run unchanged against the built sluice binary, next to a client of the
// Go SDK, over loopback.
//
// The package has no API; everything is in its tests. TestMain builds
// ./cmd/sluice once; each test starts its own engine process on free
// loopback ports and the SDK worker processes it needs (the scripts in
// node-*/ and python/), and synchronises on what they print (READY,
// HANG <tag>, MARK <json>) and on what the engine's discovery functions
// report, never on sleeps.
//
// The SDKs are installed by setup.sh (scripts/test.sh runs it). A missing
// node, node_modules or Python venv skips the tests that need it, unless
// SLUICE_INTEROP=1 is set (as in CI), which turns every skip into a
// failure.
//
// Environment:
//
//	SLUICE_INTEROP=1          a missing dependency fails instead of skipping
//	SLUICE_LONG=1             stream 256 MiB per cross-language transfer (default 32 MiB)
//	SLUICE_ENGINE_RACE=1      build the engine binary with -race
//	SLUICE_INTEROP_VERBOSE=1  log engine and worker output even when tests pass
//
// Run them with
//
//	go test -race ./interop/
//	go test -race -run 'TestSDK/node-0.22.1' ./interop/
package interop
