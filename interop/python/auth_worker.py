"""An untrusted worker on an RBAC listener, for interop/attack_auth_test.go.

The Python twin of node-0.22.1/auth_worker.mjs (same env, same output):
env III_URL (the RBAC listener), WORKER_PREFIX (sent as x-tenant), AUTH_TOKEN
(sent as x-test-token). Prints RESULT <name> <json> per call, then READY.
"""

from __future__ import annotations

import harness  # first: sets OTEL_ENABLED before the SDK starts  # isort: skip

import json
import os

from iii import InitOptions, register_worker

prefix = harness.PREFIX or "py25"
iii = register_worker(
    harness.URL,
    InitOptions(
        worker_name=f"{prefix}-rbac",
        enable_metrics_reporting=False,
        headers={"x-test-token": os.environ.get("AUTH_TOKEN", ""), "x-tenant": prefix},
    ),
)


async def own(data):
    # An HTTP trigger's input carries channel objects: return plain values only.
    return {"own": True, "y": data.get("y") if isinstance(data, dict) else None}


async def blocked(data):
    return {"should": "not be reachable"}


def normalise_error(err: BaseException) -> dict:
    code = getattr(err, "code", None)
    message = getattr(err, "message", None)
    return {"code": code if isinstance(code, str) else None, "message": message if isinstance(message, str) else str(err)}


iii.register_function("own", own)
iii.register_function("denied::blocked", blocked)
for fn, path in (("own", "own"), ("denied-trig::x", "denied"), ("elsewhere", "elsewhere")):
    iii.register_trigger({"type": "http", "function_id": fn, "config": {"api_path": f"/{prefix}/{path}", "http_method": "GET"}})


def attempt(name: str, function_id: str, payload) -> None:
    try:
        result = iii.trigger({"function_id": function_id, "payload": payload, "timeout_ms": 10000})
        harness.out(f"RESULT {name} " + json.dumps({"result": result}))
    except Exception as err:  # noqa: BLE001 - every outcome is reported
        harness.out(f"RESULT {name} " + json.dumps({"error": normalise_error(err)}))


attempt("exposed", "pub::echo", {"x": 1})
attempt("forbidden", "pub::forbidden", {})
attempt("hidden", "priv::secret", {})
attempt("granted", "priv::granted", {})
attempt("meta", "meta::public", {})
attempt("own", f"{prefix}::own", {"y": 2})
attempt("list", "engine::functions::list", {})
attempt("register_trigger", "engine::register_trigger",
        {"trigger_type": "http", "function_id": "pub::echo", "config": {"api_path": f"/{prefix}/stolen"}})
harness.serve(iii)
