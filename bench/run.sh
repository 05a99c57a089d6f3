#!/usr/bin/env bash
# Runs every performance benchmark with its baseline measured in the same
# run, and prints the ratios. Not part of scripts/test.sh. The machine these
# run on is shared and noisy: compare ratios, not absolute numbers.
#   bash bench/run.sh            # default sizes (a minute or two)
#   SLUICE_LONG=1 bash bench/run.sh   # the 1 GiB transfers of the acceptance criteria
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== invocations (Go SDK caller -> engine -> Go SDK worker vs WebSocket relay -> echo)"
go test -run '^$' -bench 'Invoke' -benchtime 20000x .
echo "== channels (Go writer -> engine -> Go reader vs raw TCP relay; 100 concurrent channels)"
go test -run '^$' -bench 'ChannelThroughput|RawTCPRelay|Channels100' -benchmem ./internal/channels/
echo "== HTTP triggers (Go worker behind the engine vs net/http behind httputil.ReverseProxy)"
go test -run '^$' -bench 'HTTP' .
go test -run '^$' -bench 'RouteLookup' -benchmem ./internal/httptrigger/
