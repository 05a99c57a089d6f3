#!/usr/bin/env bash
# Mutation testing (issue 17): gremlins mutates the error-handling and
# control-flow code of the packages below and runs each package's tests
# against every mutant; a mutant no test notices "lives". Not part of CI:
# it takes tens of minutes on a 2-core machine. Results: docs/testing.md.
#
#   bash scripts/mutation.sh                     # every package below
#   bash scripts/mutation.sh ./internal/httptrigger
set -euo pipefail
cd "$(dirname "$0")/.."
GREMLINS_VERSION=v0.6.0
bin="$(go env GOPATH)/bin/gremlins"
if [[ ! -x "$bin" ]]; then
  go install "github.com/go-gremlins/gremlins/cmd/gremlins@${GREMLINS_VERSION}"
fi
pkgs=("$@")
if [[ ${#pkgs[@]} -eq 0 ]]; then
  pkgs=(./engine ./internal/httptrigger ./internal/channels .)
fi
mkdir -p /tmp/sluice-mutation
for p in "${pkgs[@]}"; do
  name=$(echo "${p#./}" | tr '/' '-'); name=${name:-sdk}; [[ "$name" == "." ]] && name=sdk
  echo "== $p"
  # The SDK package (.) also holds the benchmarks and examples: only the
  # call, client and reader code is mutated there.
  extra=()
  if [[ "$p" == "." ]]; then
    extra=(--exclude-files '^(bench_|example_|channel|http|inline|function|trigger|options|errors|doc)' )
  fi
  "$bin" unleash --workers 2 --timeout-coefficient 3 -S lt "${extra[@]}" \
    -o "/tmp/sluice-mutation/$name.json" "$p" 2>&1 | tee "/tmp/sluice-mutation/$name.txt" | tail -6
done
