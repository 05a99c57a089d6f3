# Seed "Use Channels", Example 2: Server-Sent Events (SSE) Streaming, for PyPI
# iii-sdk 0.25.0 (the seed has this example in Node only; written here with
# the 0.25 API: iii_helpers.http, StreamResponse, async writes).
#
#   .venv/bin/python sse.py   then: curl -N http://127.0.0.1:3111/events/stream
#
# Env: III_URL (default ws://localhost:49134), SSE_DELAY_MS (pause between
# events, default 1000 as in the seed).
import asyncio
import json
import os
import threading

from iii import register_worker
from iii_helpers.http import http
from iii.types import StreamRequest, StreamResponse

SSE_DELAY_MS = int(os.environ.get("SSE_DELAY_MS", "1000"))

iii = register_worker(os.environ.get("III_URL", "ws://localhost:49134"))


def compact(value):
    return json.dumps(value, separators=(",", ":"))  # as JSON.stringify writes it


@http
async def stream_events(req: StreamRequest, response: StreamResponse):
    await response.status(200)
    await response.headers({
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "connection": "keep-alive",
    })

    for i in range(1, 6):
        frame = f"id: {i}\nevent: progress\ndata: {compact({'step': i, 'total': 5})}\n\n"
        await response.writer.write(frame.encode("utf-8"))
        await asyncio.sleep(SSE_DELAY_MS / 1000)

    done = f"id: 6\nevent: done\ndata: {compact({'message': 'complete'})}\n\n"
    await response.writer.write(done.encode("utf-8"))
    await response.writer.close_async()

iii.register_function("events::stream", stream_events)

iii.register_trigger({
    "type": "http",
    "function_id": "events::stream",
    "config": {"api_path": "/events/stream", "http_method": "GET"},
})

if __name__ == "__main__":
    try:
        threading.Event().wait()  # serve until interrupted
    except KeyboardInterrupt:
        iii.shutdown()
