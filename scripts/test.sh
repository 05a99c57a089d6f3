#!/usr/bin/env bash
# The whole test suite: vet, unit, integration and interop tests (official
# Node and Python SDKs against the built binary). Installs the pinned
# interop packages first. Usage: scripts/test.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go mod download"
go mod download

if [ -f interop/setup.sh ]; then
  echo "== interop packages (npm, PyPI; pinned)"
  bash interop/setup.sh
  export SLUICE_INTEROP=1   # interop tests fail instead of skipping when a dependency is missing
fi

echo "== go vet"
go vet ./...

# The interop tests build the engine binary with -race too, so a data race
# in the engine process fails the test that provoked it (about 2 minutes
# more than a plain build on a 2-core machine).
export SLUICE_ENGINE_RACE="${SLUICE_ENGINE_RACE:-1}"

echo "== go test -race"
go test -race -count=1 -timeout 20m "$@" ./...
