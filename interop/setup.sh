#!/usr/bin/env bash
# Installs the pinned iii SDKs used by the interop tests. Idempotent; a no-op
# (well under a second) when everything is already installed.
#
#   interop/node-0.11.6/node_modules   npm ci   (iii-sdk 0.11.6)
#   interop/node-0.22.1/node_modules   npm ci   (iii-sdk 0.22.1 + @iii-dev/helpers 0.22.1)
#   interop/.venv                      pip      (PyPI iii-sdk 0.25.0, python/requirements.txt)
#   interop/.venv-seed                 pip      (PyPI iii-sdk 0.11.6, python-seed/requirements.txt)
#   interop/.venv-sdktests             pip      (iii-sdk 0.25.0 + pytest, python-sdktests/requirements.txt)
#   interop/.py25-sdist/iii_sdk-0.25.0 the sdist (its tests/), SHA-256 checked
#   interop/rust/target/debug/worker   cargo build --locked (crate iii-sdk 0.25.0, rust/Cargo.lock)
#
# Each install is stamped with a hash of its lock/requirements file (and the
# Python version for venvs; for Rust: Cargo.toml, Cargo.lock and src/*.rs);
# a matching stamp skips the step. A changed lock file, a half-finished
# install or a deleted directory reinstalls from clean (Rust: rebuilds
# incrementally in rust/target).
#
# A missing cargo only skips the Rust worker: find_cargo.sh says that the
# rust-* interop tests then fail under scripts/test.sh and CI
# (SLUICE_INTEROP=1; plain go test skips them) and how to install cargo.
# With SLUICE_INTEROP=1 set here already, setup fails instead.
#
# Env: PYTHON  interpreter for the venvs (default: python3.11, else python3)
#      CARGO   cargo binary (default: cargo on PATH, else ~/.cargo/bin/cargo)
#      SETUP_FORCE=1  reinstall everything
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# One setup at a time (parallel test packages may all call this).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$here/.setup.lock"
  flock 9
fi

log() { printf 'interop/setup: %s\n' "$*" >&2; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

stamp_ok() { # dir expected
  [[ "${SETUP_FORCE:-}" != 1 && -f "$1/.sluice-stamp" && "$(cat "$1/.sluice-stamp")" == "$2" ]]
}

# ---------------------------------------------------------------- Node
command -v node >/dev/null || { log "node not found"; exit 1; }
command -v npm >/dev/null || { log "npm not found"; exit 1; }

for d in node-0.11.6 node-0.22.1; do
  want="$(hash_of "$d/package.json" "$d/package-lock.json")"
  if stamp_ok "$d/node_modules" "$want"; then
    continue
  fi
  log "npm ci in $d"
  # --ignore-scripts: nothing in these trees needs an install script.
  (cd "$d" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  printf '%s' "$want" >"$d/node_modules/.sluice-stamp"
done

# ---------------------------------------------------------------- Python
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi
pyver="$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

make_venv() { # venv-dir requirements-file
  local venv="$1" req="$2"
  local want
  want="$(hash_of "$req")-$pyver"
  if stamp_ok "$venv" "$want" && [[ -x "$venv/bin/python" ]]; then
    return
  fi
  log "creating $venv ($py $pyver) from $req"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input --require-hashes -r "$req"
  printf '%s' "$want" >"$venv/.sluice-stamp"
}

# ---------------------------------------------------------------- Rust
# Debug profile: a cold debug build takes about half the time of a release
# one on 2 cores, and the worker only waits on sockets (README.md).
build_rust_bin() { # bin source-patterns (globbed in rust/)...
  local name="$1" bin="rust/target/debug/$1" want cargo
  shift
  # LC_ALL=C: the same byte order as the Go test's sorted glob.
  # shellcheck disable=SC2068 # the patterns are globbed inside rust/
  want="$(cd rust && export LC_ALL=C && hash_of Cargo.toml Cargo.lock $@)"
  if [[ "${SETUP_FORCE:-}" != 1 && -x "$bin" && -f "$bin.sluice-stamp" && "$(cat "$bin.sluice-stamp")" == "$want" ]]; then
    return
  fi
  # find_cargo.sh explains a missing cargo (and fails under SLUICE_INTEROP=1).
  cargo="$(bash "$here/find_cargo.sh")" || return 1
  [[ -n "$cargo" ]] || return 0
  log "cargo build --locked --bin $name in rust/"
  rm -f "$bin.sluice-stamp"
  (cd rust && CARGO_TARGET_DIR="$here/rust/target" "$cargo" build --locked --quiet --bin "$name")
  printf '%s' "$want" >"$bin.sluice-stamp"
}

# The main worker, and beside it the namespace worker
# (rust/src/bin/ns_worker.rs, interop/namespaces_test.go) and the observe
# worker (rust/src/bin/obs_worker.rs, interop/observe_test.go): binaries of
# their own with stamps of their own, so the main worker's stamp (which the
# Go tests compare) and binary stay as they are.
build_rust() {
  build_rust_bin worker 'src/*.rs' &&
    build_rust_bin ns_worker src/bin/ns_worker.rs &&
    build_rust_bin obs_worker src/bin/obs_worker.rs
}

# The Python SDK 0.25.0's sdist: its tests/ (not in the wheel) run against
# the engine in TestPython025SDKSuite.
PY25_SDIST_SHA256=a69857b1e730dddd0ab9f288c7f6e63f255e66eb722a87de9d8692c56e6b8653
fetch_py25_sdist() {
  local dir=.py25-sdist
  if stamp_ok "$dir" "$PY25_SDIST_SHA256" && [[ -d "$dir/iii_sdk-0.25.0/tests" ]]; then
    return
  fi
  log "downloading the iii-sdk 0.25.0 sdist into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  "$py" -m pip download --quiet --disable-pip-version-check --no-input --no-deps \
    --no-binary :all: -d "$dir" iii-sdk==0.25.0
  echo "$PY25_SDIST_SHA256  $dir/iii_sdk-0.25.0.tar.gz" | sha256sum -c --quiet -
  tar -xzf "$dir/iii_sdk-0.25.0.tar.gz" -C "$dir"
  printf '%s' "$PY25_SDIST_SHA256" >"$dir/.sluice-stamp"
}

# The venvs install in parallel (pip is mostly waiting on I/O), and the
# Rust build (CPU) alongside them.
make_venv .venv python/requirements.txt & p1=$!
make_venv .venv-seed python-seed/requirements.txt & p2=$!
build_rust & p3=$!
{ make_venv .venv-sdktests python-sdktests/requirements.txt && fetch_py25_sdist; } & p4=$!
rc=0
wait "$p1" || rc=1
wait "$p2" || rc=1
wait "$p3" || rc=1
wait "$p4" || rc=1
exit "$rc"
