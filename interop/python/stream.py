"""Bulk channel transfers for the Go interop tests (interop/channels_test.go),
PyPI iii-sdk 0.25.0 (../.venv). Owned by the Go interop tests.

env III_URL (required), WORKER_PREFIX (default "py")

<prefix>::stream_write {writer, size, chunk?, messages?}
    writes ``size`` random bytes to the channel writer in writes of ``chunk``
    bytes (default 1 MiB; the SDK frames them in 64 KiB), and after each
    1/(messages+1) of the data a text message "msg-<i>"; then closes the
    writer. Returns {sha256, bytes, messages: [{text, at}]} where ``at`` is
    the number of bytes written before the message.
<prefix>::stream_read {reader}
    reads the channel reader to its end. Returns {sha256, bytes, messages:
    [{text, at}]} where ``at`` is the number of bytes received before the
    message arrived.
"""

from __future__ import annotations

import harness  # first: sets OTEL_ENABLED before the SDK starts  # isort: skip

import hashlib
import os
import sys

from iii import InitOptions, register_worker

if not os.environ.get("III_URL"):
    sys.stderr.write("III_URL is required\n")
    sys.exit(2)

prefix = harness.PREFIX or "py"

iii = register_worker(
    harness.URL,
    InitOptions(worker_name=f"{prefix}-stream", enable_metrics_reporting=False),
)


async def stream_write(data):
    writer = data["writer"]
    size = int(data["size"])
    chunk = int(data.get("chunk") or 1 << 20)
    messages = int(data.get("messages") or 0)
    every = size // (messages + 1) if messages > 0 else 0
    h = hashlib.sha256()
    sent = []
    written = 0
    nxt = 1
    while written < size:
        n = min(chunk, size - written)
        if every > 0 and nxt <= messages:
            n = min(n, nxt * every - written)
        buf = os.urandom(n)
        h.update(buf)
        await writer.write(buf)
        written += n
        if every > 0 and nxt <= messages and written == nxt * every:
            text = f"msg-{nxt}"
            await writer.send_message_async(text)
            sent.append({"text": text, "at": written})
            nxt += 1
    await writer.close_async()
    return {"sha256": h.hexdigest(), "bytes": written, "messages": sent}


async def stream_read(data):
    reader = data["reader"]
    h = hashlib.sha256()
    received = []
    count = 0

    # Text frames are dispatched from inside the iteration, in socket order:
    # `count` is exactly what arrived before the message.
    def on_message(text):
        received.append({"text": text, "at": count})

    reader.on_message(on_message)
    async for chunk in reader:
        h.update(chunk)
        count += len(chunk)
    return {"sha256": h.hexdigest(), "bytes": count, "messages": received}


iii.register_function(f"{prefix}::stream_write", stream_write)
iii.register_function(f"{prefix}::stream_read", stream_read)

if __name__ == "__main__":
    harness.serve(iii)
