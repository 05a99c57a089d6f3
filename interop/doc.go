// Package interop holds the interoperability tests of Sluice: the official
// iii SDKs (npm iii-sdk 0.11.6 and 0.22.1, PyPI iii-sdk 0.25.0 and 0.11.6,
// the Rust crate iii-sdk 0.25.0) run unchanged against the built sluice
// binary, next to a client of the Go SDK, over loopback.
//
// The package has no API; everything is in its tests. TestMain builds
// ./cmd/sluice once; each test starts its own engine process on free
// loopback ports and the SDK worker processes it needs (the scripts in
// node-*/ and python/, the binary built from rust/), and synchronises on what they print (READY,
// HANG <tag>, MARK <json>) and on what the engine's discovery functions
// report, never on sleeps.
//
// The tests, each run per SDK flavour (node-0.11.6, node-0.22.1,
// python-0.25.0, python-seed-0.11.6, rust-0.25.0):
//
//	TestSDK           calls both ways between Go and the SDK (echo with
//	                  _caller_worker_id, SDK -> go::add), void calls both
//	                  ways, function_not_found, handler errors with code and
//	                  message both ways, a worker SIGKILLed mid-invocation
//	                  (invocation_stopped < 2 s), reconnect after an engine
//	                  crash and after a graceful restart on the same port,
//	                  engine::functions::list / engine::workers::list
//	TestSeedExamples  the seed's channel Examples 3 and 4 as each SDK runs
//	                  them (Rust: ported, rust/src/seeds.rs), the same
//	                  written in Go (seed_go_test.go), and
//	                  Go producer / coordinator driving the SDK's consumer /
//	                  transform worker
//	TestStreams       random bytes with interleaved text messages Node ->
//	                  Go, Go -> Node, Go -> Python, Python -> Go, Rust ->
//	                  Go, Go -> Rust (SHA-256, counts and message offsets
//	                  compared), and a Node, Python and Rust writer
//	                  process SIGKILLed mid-stream (the Go reader must fail
//	                  with ErrStreamBroken, never io.EOF); helpers in
//	                  node-0.22.1/stream.mjs, python/stream.py and
//	                  rust/src/stream.rs (`worker stream`)
//	TestSeedHTTP      the seed's HTTP Examples (seed_http_test.go; the Go
//	                  adapter's versions in seed_http_go_test.go), fetched
//	                  with net/http from the engine's HTTP listener:
//	                  Example2SSE (node-0.11.6, node-0.22.1, Go): six
//	                  events must arrive one at a time, each while the
//	                  function waits for the test to have read it before
//	                  writing the next (SSE_GATE_URL), with the seed's
//	                  headers; then Example1Download (node-0.11.6,
//	                  node-0.22.1, python-seed-0.11.6 as written,
//	                  python-0.25.0 adapted, Go): a 64 MiB random file,
//	                  status, headers, size and SHA-256
//
// and, once, with the Go SDK only:
//
//	TestHTTPUploadEngineMemory     a 1 GiB POST (64 MiB with -short)
//	                  streamed to a Go handler that hashes it; the hash
//	                  must match and the engine process's peak RSS (VmHWM)
//	                  stay within 48 MiB of its RSS before the upload
//	TestChannelMemoryStalledReader 1 GiB through a channel whose reader
//	                  stalls first; the engine's RSS stays bounded
//
// The user-facing examples, as a user runs them:
//
//	TestExampleSeeds  examples/seeds/ in Go, Node 0.22.1, Python 0.25 and
//	                  Rust 0.25 (examples_seeds_test.go): download (8 MiB,
//	                  SHA-256), SSE (pacing as in TestSeedHTTP), pipeline
//	                  and transform (their printed answers); the Rust ones
//	                  are built with cargo into $CARGO_TARGET_DIR, by
//	                  default rust/target
//	TestExampleSeedsMatchInterop  examples/seeds/node-0.22.1 and
//	                  node-0.22.1/seed_*.mjs hold the same code
//	TestReadmeChannelsGo, TestReadmeQuickstart  the README's commands
//	                  (readme_test.go)
//	TestStartupLogWorkerLines  engine log lines name workers
//	TestSetupMissingCargoMessage, TestSetupFindsCargo  find_cargo.sh
//
// The SDKs are installed by setup.sh (scripts/test.sh runs it; it builds
// the Rust worker with cargo when cargo is there). A missing node,
// node_modules, Python venv or an absent or stale Rust worker binary skips
// the tests that need it, unless SLUICE_INTEROP=1 is set (as in CI), which
// turns every skip into a failure.
//
// Environment:
//
//	SLUICE_INTEROP=1          a missing dependency fails instead of skipping
//	-short                    stream 32 MiB per cross-language transfer (default 256 MiB)
//	SLUICE_ENGINE_RACE=1      build the engine binary with -race
//	SLUICE_INTEROP_VERBOSE=1  log engine and worker output even when tests pass
//
// Run them with
//
//	go test -race ./interop/
//	go test -race -run 'TestSDK/node-0.22.1' ./interop/
//	go test -race -run 'TestSDK/rust' ./interop/
package interop
