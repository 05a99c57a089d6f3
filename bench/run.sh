#!/usr/bin/env bash
# Runs every performance benchmark with its baseline measured in the same
# run, and prints the ratios. Not part of scripts/test.sh. The machine these
# run on is shared and noisy: compare ratios, not absolute numbers, and run
# twice before believing a change.
#   bash bench/run.sh                 # default sizes (a few minutes)
#   SLUICE_LONG=1 bash bench/run.sh   # also the 1 GiB HTTP download
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== invocations (Go SDK caller -> engine -> Go SDK worker vs WebSocket relay -> echo)"
go test -run '^$' -bench 'Invoke' -benchtime 20000x .
echo "== wire codec (fast path vs the reference JSON codec)"
go test -run '^$' -bench 'Decode|Encode' -benchtime 200000x ./wire/
echo "== channels, 1 GiB in 64 KiB frames (Go SDK writer -> engine -> Go SDK reader vs TCP relays)"
go test -run '^$' -bench 'ChannelThroughput' -benchtime 16384x ./internal/channels/
go test -run '^$' -bench 'Channels100' -benchtime 16384x ./internal/channels/
(cd interop && go test -run '^$' -bench 'ChannelProcess' -benchtime 16384x -count 2 .)
echo "== HTTP triggers (Go worker behind the engine vs net/http behind httputil.ReverseProxy)"
go test -run '^$' -bench 'HTTP' -benchtime 2s .
go test -run '^$' -bench 'RouteLookup' -benchtime 2000000x ./internal/httptrigger/
echo "== durable queues (group commit vs one commit per insert; end to end through the built engine)"
go test -run '^$' -bench 'SQLiteEnqueue' -benchtime 3000x ./internal/queue/
(cd interop && go test -run '^$' -bench 'QueueEndToEnd' -benchtime 20000x .)
(cd interop && go test -run '^$' -bench 'QueueBacklogRSS' -benchtime 1x .)
(cd interop && go test -run '^$' -bench 'QueueTopicVsUpstream' -benchtime 1000x .)
