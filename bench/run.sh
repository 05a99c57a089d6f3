#!/usr/bin/env bash
# The multi-process benchmark suite: every hop its own process (caller →
# engine → worker, client → proxy/relay → backend), Sluice, the plain
# baselines and the upstream engine interleaved in one run, median ratios
# printed at the end. Not part of scripts/test.sh. The machine these run
# on is shared and noisy: compare ratios, not absolute numbers.
#   bash bench/run.sh                        # everything, a few minutes (256 MiB transfers)
#   SLUICE_LONG=1 bash bench/run.sh          # 1 GiB channel and download runs (same as -big)
#   bash bench/run.sh -reps 2 -only 'invoke' # any flag of `benchsuite run` (-h lists them)
#   bash bench/run.sh -only cluster          # issue 15: 3 engine nodes and 3 nats-servers only
#   SLUICE_IN_PROCESS=1 bash bench/run.sh    # then also the in-process go test benchmarks
# The upstream engine (0.22.1) is taken from ../shared/tools/upstream (or
# /work/shared/tools/upstream, or $SLUICE_UPSTREAM_GZ); without it the
# upstream columns are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/sluice" ./cmd/sluice
go build -o "$out/benchsuite" ./bench/cmd/benchsuite
up=${SLUICE_UPSTREAM_GZ:-}
for d in ../shared/tools/upstream ../../shared/tools/upstream /work/shared/tools/upstream; do
  [ -z "$up" ] && [ -f "$d/iii-0.22.1-linux-amd64.gz" ] && up="$d/iii-0.22.1-linux-amd64.gz"
done
args=(-sluice "$out/sluice" -upstream "$up")
[ "${SLUICE_LONG:-}" = 1 ] && args+=(-big)
"$out/benchsuite" run "${args[@]}" "$@"

[ "${SLUICE_IN_PROCESS:-}" = 1 ] || exit 0
echo "== invocations, in process (Go SDK caller -> engine -> Go SDK worker vs WebSocket relay -> echo)"
go test -run '^$' -bench 'Invoke' -benchtime 20000x .
echo "== wire codec (fast path vs the reference JSON codec)"
go test -run '^$' -bench 'Decode|Encode' -benchtime 200000x ./wire/
echo "== channels, 1 GiB in 64 KiB frames (Go SDK writer -> engine -> Go SDK reader vs TCP relays)"
go test -run '^$' -bench 'ChannelThroughput' -benchtime 16384x ./internal/channels/
go test -run '^$' -bench 'Channels100' -benchtime 16384x ./internal/channels/
(cd interop && go test -run '^$' -bench 'ChannelProcess' -benchtime 16384x -count 2 .)
echo "== HTTP triggers, in process (Go worker behind the engine vs net/http behind httputil.ReverseProxy)"
go test -run '^$' -bench 'HTTP' -benchtime 2s .
go test -run '^$' -bench 'RouteLookup' -benchtime 2000000x ./internal/httptrigger/
echo "== durable queues (group commit vs one commit per insert; end to end through the built engine)"
go test -run '^$' -bench 'SQLiteEnqueue' -benchtime 3000x ./internal/queue/
(cd interop && go test -run '^$' -bench 'QueueEndToEnd' -benchtime 20000x .)
(cd interop && go test -run '^$' -bench 'QueueBacklogRSS' -benchtime 1x .)
(cd interop && go test -run '^$' -bench 'QueueTopicVsUpstream' -benchtime 1000x .)
