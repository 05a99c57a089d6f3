"""A worker for the cluster tests (interop/cluster_modules_test.go).

The Python twin of node-0.22.1/cluster_modules.mjs (same env, same output):
env III_URL, WORKER_PREFIX, NODE_LABEL. <prefix>::cl_http behind
POST /<prefix>/cl/:name answers {served_by, name, got}; <prefix>::cl_tick
behind the cron "* * * * * *" prints CRON <scheduled_time>; <prefix>::cl_state
behind a state binding on scope <prefix> prints STATE <event_type> <key>;
<prefix>::cl_topic behind a subscribe binding on topic <prefix>-topic prints
TOPIC <data.n>; <prefix>::cl_stream behind a stream binding on stream
<prefix>-board prints STREAM <event.type> <id>. Prints READY.
"""

from __future__ import annotations

import harness  # first: sets OTEL_ENABLED before the SDK starts  # isort: skip

import os

from iii import InitOptions, register_worker

prefix = harness.PREFIX or "py25"
label = os.environ.get("NODE_LABEL", "")
iii = register_worker(harness.URL, InitOptions(worker_name=f"{prefix}-cluster-{label}", enable_metrics_reporting=False))


async def cl_http(req):
    # The input carries channel objects: read plain values only.
    params = req.get("path_params") if isinstance(req, dict) else None
    body = req.get("body") if isinstance(req, dict) else None
    return {
        "status_code": 200,
        "headers": {"content-type": "application/json"},
        "body": {"served_by": label, "name": (params or {}).get("name"), "got": body if isinstance(body, dict) else None},
    }


async def cl_tick(ev):
    harness.out(f"CRON {ev.get('scheduled_time') if isinstance(ev, dict) else None}")
    return None


async def cl_state(ev):
    if isinstance(ev, dict):
        harness.out(f"STATE {ev.get('event_type')} {ev.get('key')}")
    return None


async def cl_topic(data):
    harness.out(f"TOPIC {data.get('n') if isinstance(data, dict) else None}")
    return None


async def cl_stream(msg):
    if isinstance(msg, dict):
        event = msg.get("event") if isinstance(msg.get("event"), dict) else {}
        harness.out(f"STREAM {event.get('type')} {msg.get('id')}")
    return None


iii.register_function(f"{prefix}::cl_http", cl_http)
iii.register_trigger({"type": "http", "function_id": f"{prefix}::cl_http", "config": {"api_path": f"/{prefix}/cl/:name", "http_method": "POST"}})
iii.register_function(f"{prefix}::cl_tick", cl_tick)
iii.register_trigger({"type": "cron", "function_id": f"{prefix}::cl_tick", "config": {"expression": "* * * * * *"}})
iii.register_function(f"{prefix}::cl_state", cl_state)
iii.register_trigger({"type": "state", "function_id": f"{prefix}::cl_state", "config": {"scope": prefix}})
iii.register_function(f"{prefix}::cl_topic", cl_topic)
iii.register_trigger({"type": "subscribe", "function_id": f"{prefix}::cl_topic", "config": {"topic": f"{prefix}-topic"}})
iii.register_function(f"{prefix}::cl_stream", cl_stream)
iii.register_trigger({"type": "stream", "function_id": f"{prefix}::cl_stream", "config": {"stream_name": f"{prefix}-board"}})
harness.serve(iii)
