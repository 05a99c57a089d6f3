"""Namespace interop worker for PyPI iii-sdk 0.25.0 (../.venv). See ../README.md.

env III_URL (required), WORKER_PREFIX (the worker name and the tag its
functions answer with), NS (the worker's namespace; unset: none declared),
FNS (comma-separated function ids to register; default <prefix>::who),
ROUTE (an HTTP GET route to the first of them, when set), SUBSCRIBE (a
durable:subscriber binding of the first of them to that topic, when set).
Each call of a function in FNS prints "CALLED <id>".

Every function in FNS answers {"worker": <prefix>, "namespace": <NS or null>,
"input": <its input>}. <prefix>::call forwards a trigger: input
{function_id, payload, namespace?} (namespace omitted: the SDK's default,
this worker's namespace) and answers {"result": ...} or {"error": {code,
message}}. Prints READY; SDK log lines go to stderr (the tests wait on the
registrationrejected warnings there).
"""

from __future__ import annotations

import harness  # first: sets OTEL_ENABLED before the SDK starts  # isort: skip

import json
import logging
import os
import sys

from iii import InitOptions, register_worker

if not os.environ.get("III_URL"):
    sys.stderr.write("III_URL is required\n")
    sys.exit(2)

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

prefix = harness.PREFIX or "pyns"
ns = os.environ.get("NS") or None
fns = [f for f in os.environ.get("FNS", f"{prefix}::who").split(",") if f]

iii = register_worker(
    harness.URL,
    InitOptions(worker_name=prefix, namespace=ns, enable_metrics_reporting=False),
)


def make(fid: str):
    async def who(data):
        harness.out(f"CALLED {fid}")
        try:
            json.dumps(data)
        except TypeError:  # an HTTP request (it holds channel ends)
            data = None
        # status_code/body: the same answer serves an HTTP route.
        return {"worker": prefix, "namespace": ns, "function_id": fid, "input": data,
                "status_code": 200, "body": {"worker": prefix, "namespace": ns}}

    return who


async def call(data):
    data = data if isinstance(data, dict) else {}
    req: dict = {"function_id": data.get("function_id"), "payload": data.get("payload")}
    if "namespace" in data:
        req["namespace"] = data["namespace"]
    try:
        return {"result": await iii.trigger_async(req)}
    except Exception as err:  # noqa: BLE001 - every failure is reported to the caller
        code = getattr(err, "code", None)
        message = getattr(err, "message", None)
        return {"error": {"code": code if isinstance(code, str) else None,
                          "message": message if isinstance(message, str) else str(err)}}


for fid in fns:
    iii.register_function(fid, make(fid))
iii.register_function(f"{prefix}::call", call)
if os.environ.get("SUBSCRIBE") and fns:
    # A durable:subscriber binding of the first function to that topic.
    iii.register_trigger({"type": "durable:subscriber", "function_id": fns[0],
                          "config": {"topic": os.environ["SUBSCRIBE"]}})
if os.environ.get("ROUTE") and fns:
    # An HTTP route to the first function: the SDK binds it in this worker's
    # namespace (registertrigger.namespace).
    iii.register_trigger({"type": "http", "function_id": fns[0],
                          "config": {"api_path": os.environ["ROUTE"], "http_method": "GET"}})

harness.serve(iii)
