"""Interop worker for PyPI iii-sdk (0.25.0 in ../.venv, 0.11.6 in ../.venv-seed).

See ../README.md.  env III_URL (required), WORKER_PREFIX (default "py"),
SEEDS=0 to skip the seed examples.
"""

from __future__ import annotations

import harness  # first: sets OTEL_ENABLED before the SDK starts  # isort: skip

import asyncio
import importlib
import json
import os
import sys

from iii import InitOptions, register_worker

if not os.environ.get("III_URL"):
    sys.stderr.write("III_URL is required\n")
    sys.exit(2)

prefix = harness.PREFIX or "py"

iii = register_worker(
    harness.URL,
    InitOptions(worker_name=prefix, enable_metrics_reporting=False),
)


def normalise_error(err: BaseException) -> dict:
    """{code, message} of a failed trigger. ``InvocationError`` (0.25) and
    ``IIIInvocationError`` (0.11.6) keep the wire ErrorBody's ``code`` and
    ``message`` (``str(err)`` is "<code>: <message>"); other exceptions have no
    code (null) and their ``str()`` as message."""
    code = getattr(err, "code", None)
    message = getattr(err, "message", None)
    if not isinstance(code, str):
        code = None
    if not isinstance(message, str):
        message = str(err)
    return {"code": code, "message": message}


async def echo(data):
    return data


async def fail(data):
    raise RuntimeError(f"boom from {prefix}")


async def hang(data):
    tag = data.get("tag") if isinstance(data, dict) else None
    harness.out(f"HANG {tag}")
    await asyncio.Event().wait()


async def mark(data):
    value = data.get("value") if isinstance(data, dict) else None
    harness.out("MARK " + json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    return None


async def call(data):
    data = data if isinstance(data, dict) else {}
    # payload passed through as given: omitted (None) => no `data` key on the wire.
    req: dict = {"function_id": data.get("function_id"), "payload": data.get("payload")}
    action = data.get("action")
    if action == "void":
        req["action"] = {"type": "void"}
    elif isinstance(action, dict):  # e.g. {"type": "enqueue", "queue": "q"}
        req["action"] = action
    if data.get("timeout_ms"):
        req["timeout_ms"] = data["timeout_ms"]
    try:
        result = await iii.trigger_async(req)
        return {"result": result}
    except Exception as err:  # noqa: BLE001 - every failure is reported to the caller
        return {"error": normalise_error(err)}


async def pid(data):
    return {"pid": os.getpid()}


for name, fn in [("echo", echo), ("fail", fail), ("hang", hang), ("mark", mark), ("call", call), ("pid", pid)]:
    iii.register_function(f"{prefix}::{name}", fn)

clients = [iii]
if os.environ.get("SEEDS") != "0":
    # The seed's channel example (as written, and the working variant), each in
    # its own module with its own register_worker() connection.
    for module in ("seed_pipeline", "seed_pipeline_fixed"):
        clients.append(importlib.import_module(module).iii_client)

harness.serve(*clients)
