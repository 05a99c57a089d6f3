"""The platform modules (state, pubsub, cron) from iii-sdk 0.25.0, for
interop/modules_test.go: the Python twin of node-0.22.1/modules.mjs (same env,
same functions and bindings). Prints READY.
"""

from __future__ import annotations

import harness  # first: sets OTEL_ENABLED before the SDK starts  # isort: skip

from iii import InitOptions, register_worker
from iii.helpers import create_stream
from iii.stream import IStream
from iii_helpers.stream import StreamDeleteResult, StreamSetResult

prefix = harness.PREFIX or "py25"
iii = register_worker(harness.URL, InitOptions(worker_name=f"{prefix}-modules", enable_metrics_reporting=False))


async def seen(kind, data):
    await iii.trigger_async({"function_id": "gomod::seen", "payload": {"from": prefix, "kind": kind, "data": data}})


async def call(data):
    try:
        result = await iii.trigger_async({"function_id": data["function_id"], "payload": data["payload"], "timeout_ms": 10000})
        return {"result": result}
    except Exception as err:  # noqa: BLE001 - reported to the caller
        code = getattr(err, "code", None)
        return {"error": {"code": code if isinstance(code, str) else None, "message": str(err)}}


async def incr(data):
    for _ in range(data["n"]):
        await iii.trigger_async({"function_id": "state::update", "payload": {
            "scope": data["scope"], "key": data["key"], "ops": [{"type": "increment", "path": "count", "by": 1}]}})
    return {"done": data["n"]}


async def on_state(ev):
    await seen("state", ev)


async def on_topic(data):
    await seen("topic", data)


async def on_cron(ev):
    await seen("cron", ev)


async def on_stream(msg):
    await seen("stream", msg)


async def odd_only(ev):
    return ((ev.get("new_value") or {}).get("n") or 0) % 2 == 1


iii.register_function(f"{prefix}::call", call)
iii.register_function(f"{prefix}::incr", incr)
iii.register_function(f"{prefix}::on_state", on_state)
iii.register_function(f"{prefix}::on_topic", on_topic)
iii.register_function(f"{prefix}::on_cron", on_cron)
iii.register_function(f"{prefix}::on_stream", on_stream)
iii.register_function(f"{prefix}::odd_only", odd_only)
iii.register_trigger({"type": "state", "function_id": f"{prefix}::on_state",
                      "config": {"scope": f"{prefix}-watched", "condition_function_id": f"{prefix}::odd_only"}})
iii.register_trigger({"type": "subscribe", "function_id": f"{prefix}::on_topic", "config": {"topic": f"{prefix}-topic"}})
iii.register_trigger({"type": "stream", "function_id": f"{prefix}::on_stream", "config": {"stream_name": "board", "item_id": prefix}})
iii.register_trigger({"type": "cron", "function_id": f"{prefix}::on_cron", "config": {"expression": "* * * * * *"}})


class CustomStream(IStream):
    """A custom stream served by this worker (the SDK's create_stream)."""

    def __init__(self):
        self.items = {}

    async def get(self, input):
        return self.items.get((input.group_id, input.item_id))

    async def set(self, input):
        old = self.items.get((input.group_id, input.item_id))
        self.items[(input.group_id, input.item_id)] = input.data
        return StreamSetResult(old_value=old, new_value=input.data)

    async def delete(self, input):
        return StreamDeleteResult(old_value=self.items.pop((input.group_id, input.item_id), None))

    async def list(self, input):
        return [v for (g, _), v in sorted(self.items.items()) if g == input.group_id]

    async def list_groups(self, input):
        return sorted({g for (g, _) in self.items})

    async def update(self, input):
        return None


create_stream(iii, f"{prefix}-custom", CustomStream())
harness.serve(iii)
