"""observe.v1 with the official Python SDK (0.25): interop/observe_test.go.

Two connections: the owner hosts WORKER_PREFIX::charge (and a function that
calls it in-process, through local dispatch); the watcher hosts the targets
and observes charge (and the Go test's go-obs::ping). Every activation a
target receives is printed as one ``ACT <target> <json>`` line; refusals as
``REFUSED <code>``. ``::drop-watcher`` / ``::drop-owner`` cut that worker's
socket the way a network failure does (the SDK reconnects and replays).
"""

from __future__ import annotations

import harness  # first: sets OTEL_ENABLED before the SDK starts  # isort: skip

import json

from harness import PREFIX, out
from iii import InitOptions, ObserveRejection, register_worker

P = PREFIX
owner = register_worker(harness.URL, InitOptions(worker_name=f"{P}-owner", enable_metrics_reporting=False))
watcher = register_worker(harness.URL, InitOptions(worker_name=f"{P}-watcher", enable_metrics_reporting=False))


def charge(data):
    if data.get("amount", 0) < 0:
        raise RuntimeError("card declined")
    return {"charged": data["amount"]}


def local_call(data):
    # The owner hosts charge: the SDK runs this call in-process once the
    # engine confirmed local dispatch, and reports it (invocationsobserved).
    return owner.trigger({"function_id": f"{P}::charge", "payload": data})


def drop(client):
    def handler(_data):
        async def abort():
            if client._ws is not None:
                client._ws.transport.abort()

        client._run_on_loop(abort())
        return None

    return handler


owner.register_function(f"{P}::charge", charge)
owner.register_function(f"{P}::local-call", local_call)
owner.register_function(f"{P}::drop-owner", drop(owner))
watcher.register_function(f"{P}::drop-watcher", drop(watcher))


def target(name):
    def handler(data, metadata=None):
        inv = watcher.current_invocation()
        meta = metadata
        depth = inv.observe_depth if inv is not None else -1
        out(f"ACT {name} " + json.dumps({"data": data, "metadata": meta, "depth": depth}, sort_keys=True))
        return None

    return handler


for name in ("alert", "alert-err", "alert-local", "alert-go"):
    watcher.register_function(f"{P}::{name}", target(name))

observers = [
    watcher.observe(
        {
            "function_id": f"{P}::charge",
            "filters": {"input.amount": {"$gte": 500}, "caller.worker_name": {"$prefix": "gocaller"}},
            "capture": ["input", "output", "caller", "metadata"],
        },
        f"{P}::alert",
        {"metadata": {"team": "payments"}},
    ),
    watcher.observe({"function_id": f"{P}::charge", "on": "error", "capture": ["error"]}, f"{P}::alert-err"),
    watcher.observe(
        {"function_id": f"{P}::charge", "filters": {"caller.function_id": {"$eq": f"{P}::local-call"}}},
        f"{P}::alert-local",
    ),
    watcher.observe({"function_id": "go-obs::ping"}, f"{P}::alert-go"),
]
for o in observers[:3]:
    o.ready(timeout=10)

for source, tgt in (
    ({"function_id": f"{P}::charge"}, f"{P}::charge"),
    ({"function_id": f"{P}::charge", "filters": {"input.x": "literal"}}, f"{P}::alert"),
    ({"function_id": f"{P}::charge", "args": {"topic": "a"}}, f"{P}::alert"),
):
    try:
        watcher.observe(source, tgt).ready(timeout=10)
        out("REFUSED none")
    except ObserveRejection as e:
        out(f"REFUSED {e.code}")

out("OBSERVING " + json.dumps({"alert": observers[0].id, "go": observers[3].id}))
harness.serve(owner, watcher)
