#!/usr/bin/env bash
# Prints the cargo that builds the Rust interop worker: $CARGO, else cargo on
# PATH, else ~/.cargo/bin/cargo. Without one it explains on stderr what
# that means for the tests and how to install cargo, then prints nothing
# and exits 0, or exits 1 when SLUICE_INTEROP=1 (CI: missing SDKs fail).
# Used by setup.sh; runs alone in milliseconds.
set -euo pipefail

cargo="${CARGO:-}"
if [[ -z "$cargo" ]]; then
  if command -v cargo >/dev/null 2>&1; then cargo="$(command -v cargo)"
  elif [[ -x "${HOME:-}/.cargo/bin/cargo" ]]; then cargo="$HOME/.cargo/bin/cargo"
  fi
fi
if [[ -n "$cargo" ]]; then
  printf '%s\n' "$cargo"
  exit 0
fi

if [[ "${SLUICE_INTEROP:-}" == 1 ]]; then
  consequence="the Rust interop tests (rust-*) cannot run, and with SLUICE_INTEROP=1 (scripts/test.sh, CI) they FAIL; failing setup now."
else
  consequence="the Rust interop tests (rust-*) FAIL under scripts/test.sh and in CI (SLUICE_INTEROP=1); a plain 'go test ./interop/' skips them."
fi
{
  printf '%s\n' "interop/setup: cargo not found (not \$CARGO, not on PATH, not ~/.cargo/bin/cargo): the Rust worker is not built."
  printf '%s\n' "interop/setup: $consequence"
  printf '%s\n' "interop/setup: install Rust 1.85 or newer, then re-run interop/setup.sh:"
  printf '%s\n' "interop/setup:   rustup:         curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh   (then: . \"\$HOME/.cargo/env\")"
  printf '%s\n' "interop/setup:   Debian/Ubuntu:  sudo apt-get install cargo   (check 'cargo --version' >= 1.85; older releases: use rustup)"
  printf '%s\n' "interop/setup:   or set CARGO=/path/to/cargo"
} >&2
[[ "${SLUICE_INTEROP:-}" == 1 ]] && exit 1
exit 0
