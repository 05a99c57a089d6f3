#!/usr/bin/env bash
# Runs the official Python SDK 0.25.0's own test suite against the built
# engine (issue 12, acceptance 2): downloads the sdist (its tests/ are not in
# the wheel), makes a venv with iii-sdk 0.25.0 and the test dependencies,
# then runs interop's TestPython025SDKSuite (the whole tests/ directory
# against one engine, minus the exclusions in interop/py25_sdk_test.go and
# docs/protocol.md#observe) and TestPython025SDKRBACSuite (test_rbac_workers.py
# against an engine with the suite's RBAC listener) and
# TestPython025HTTPFunctionsSuite (test_http_external_functions_integration.py).
#
#   scripts/py25-sdk-tests.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${PY25_WORK:-${TMPDIR:-/tmp}/sluice-py25}
mkdir -p "$work"
if [ ! -d "$work/iii_sdk-0.25.0/tests" ]; then
	python3 -m pip download --quiet iii-sdk==0.25.0 --no-deps --no-binary :all: -d "$work"
	tar -xzf "$work/iii_sdk-0.25.0.tar.gz" -C "$work"
fi
if [ ! -x "$work/venv/bin/python" ]; then
	python3 -m venv "$work/venv"
	"$work/venv/bin/pip" install --quiet "iii-sdk==0.25.0" "pytest>=8" "pytest-asyncio>=0.23" aiohttp
fi
export SLUICE_PY25_SDIST="$work/iii_sdk-0.25.0" SLUICE_PY25_PYTHON="$work/venv/bin/python"
cd "$root" && go test -count=1 -timeout 20m -run 'TestPython025(SDK|SDKRBAC|HTTPFunctions)Suite$' -v ./interop/
