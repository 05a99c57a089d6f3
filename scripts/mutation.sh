#!/usr/bin/env bash
# Mutation testing (issue 17): gremlins mutates the error-handling and
# control-flow code of the packages below and runs each package's tests
# against every mutant; a mutant no test notices "lives". Not part of CI:
# it takes tens of minutes on a 2-core machine. Results: docs/testing.md.
#
#   bash scripts/mutation.sh                     # every package below
#   bash scripts/mutation.sh ./internal/httptrigger
#   GREMLINS_ARGS="--exclude-files ^(router|payload)" bash scripts/mutation.sh ./internal/httptrigger
#   GOFLAGS='-run=^(TestPipe|TestMem)' MUTATION_OUT=/tmp/sluice-mutation-me bash scripts/mutation.sh ./internal/channels
#
# GOFLAGS is kept (e.g. a -run that picks the tests relevant to the files
# mutated); -count=1 is always added. MUTATION_OUT: where the JSON and text
# results go (default /tmp/sluice-mutation).
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
out=${MUTATION_OUT:-/tmp/sluice-mutation}
mkdir -p "$out"
# gremlins sets each mutant's time limit to (duration of its first coverage
# run) x coefficient. That first run was answered from Go's test cache
# (about a second), so nearly every mutant "timed out". -count=1 makes the
# coverage run (and every mutant run) really compile and run the tests, and
# a coefficient of 5 leaves room for a loaded machine. One worker: the tests
# themselves are concurrent and timing-bounded. (--test-cpu is broken in
# v0.6.0: it passes "-cpu N" as one argument.)
export GOFLAGS="-count=1${GOFLAGS:+ $GOFLAGS}"
for p in "${pkgs[@]}"; do
  name=$(echo "${p#./}" | tr '/' '-'); name=${name:-sdk}; [[ "$name" == "." ]] && name=sdk
  echo "== $p"
  # The SDK package (.) also holds the benchmarks and examples: only the
  # call, client and reader code is mutated there.
  extra=()
  dir=.
  if [[ "$p" == "." ]]; then
    # gremlins walks the whole tree under the path: '/' drops every other
    # package's files. Its coverage run for the module root is "./...",
    # interop included (minutes, and it needs the SDKs): run it on a copy
    # without interop/.
    extra=(--exclude-files '/' --exclude-files '^(bench_|example_|channel|http|inline|function|trigger|options|errors|doc|queue|observe)' )
    dir=$(mktemp -d "$out/sdk.XXXX")
    tar --exclude=./interop --exclude=./.git -cf - . | tar -xf - -C "$dir"
  fi
  # shellcheck disable=SC2086 # GREMLINS_ARGS: extra flags, word-split
  (cd "$dir" && "$bin" unleash --workers 1 --timeout-coefficient 5 "${extra[@]}" ${GREMLINS_ARGS:-} \
    -o "$out/$name.json" "$p") 2>&1 | tee "$out/$name.txt" | tail -8
  [[ "$dir" == . ]] || rm -rf "$dir"
done
