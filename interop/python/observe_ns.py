"""observe.v1 across namespaces with the official Python SDK (0.25):
interop/observe_test.go TestObserveNamespacesPython025.

P::charge exists twice: in namespace ``orders`` (the owner, which also calls
it in-process from P::local-call: local dispatch) and in ``default``. The
watcher, in ``orders``, observes ``charge`` unqualified (the SDK fills in its
own namespace) into its P::alert; the auditor, in ``default``, observes
``{charge, namespace: orders}`` into its P::audit. Activations are printed as
``ACT <target> <json>``; P::call lets the Go test call in a namespace.
"""

from __future__ import annotations

import harness  # first: sets OTEL_ENABLED before the SDK starts  # isort: skip

import json

from harness import PREFIX, out
from iii import InitOptions, register_worker

P = PREFIX


def opts(name, ns=None):
    return InitOptions(worker_name=f"{P}-{name}", namespace=ns, enable_metrics_reporting=False)


owner = register_worker(harness.URL, opts("owner", "orders"))
watcher = register_worker(harness.URL, opts("watcher", "orders"))
auditor = register_worker(harness.URL, opts("auditor"))


def charge(ns):
    def handler(data):
        return {"charged": data["amount"], "ns": ns}

    return handler


owner.register_function(f"{P}::charge", charge("orders"))
owner.register_function(
    f"{P}::local-call", lambda data: owner.trigger({"function_id": f"{P}::charge", "payload": data})
)
auditor.register_function(f"{P}::charge", charge("default"))
auditor.register_function(
    f"{P}::call",
    lambda data: auditor.trigger({"function_id": data["fn"], "payload": data["payload"], "namespace": data.get("ns") or None}),
)


def target(client, name):
    def handler(data):
        inv = client.current_invocation()
        depth = inv.observe_depth if inv is not None else -1
        out(f"ACT {name} " + json.dumps({"data": data, "depth": depth}, sort_keys=True))
        return None

    return handler


watcher.register_function(f"{P}::alert", target(watcher, "alert"))
auditor.register_function(f"{P}::audit", target(auditor, "audit"))

within = watcher.observe({"function_id": f"{P}::charge"}, f"{P}::alert")
across = auditor.observe({"function_id": f"{P}::charge", "namespace": "orders"}, f"{P}::audit")
for o in (within, across):
    o.ready(timeout=10)
out("OBSERVING " + json.dumps({"within": within.id, "across": across.id}))
harness.serve(owner, watcher, auditor)
