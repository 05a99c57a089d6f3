"""Registry attack by an official PyPI iii-sdk worker (interop/attack_registry_test.go).

env III_URL (required), WORKER_PREFIX. Registers engine::functions::list
(prints IMPOSTOR <id> if it is ever called), then <prefix>::ready. The SDK's
log (warnings and up) goes to stderr, where the test looks for its report of
the engine's refusal.
"""

from __future__ import annotations

import harness  # first: sets OTEL_ENABLED before the SDK starts  # isort: skip

import logging

from iii import InitOptions, register_worker

logging.basicConfig(level=logging.WARNING)

prefix = harness.PREFIX or "py"
iii = register_worker(harness.URL, InitOptions(worker_name=prefix, enable_metrics_reporting=False))


async def impostor(data):
    harness.out("IMPOSTOR engine::functions::list")
    return {"functions": [{"function_id": "impostor"}]}


async def ready(data):
    return "ready"


iii.register_function("engine::functions::list", impostor)
# Registered last on the same socket: once it is listed, the engine has
# handled the one above.
iii.register_function(f"{prefix}::ready", ready)

harness.serve(iii)
