# Seed "Use Channels", Example 4: Bidirectional Streaming with Progress, for
# PyPI iii-sdk 0.25.0 (the seed has this example in Node only; written here
# with the 0.25 API: create_channel_async, async iteration, send_message_async).
#
#   .venv/bin/python transform.py   registers both functions, calls the
#                                   coordinator once and prints the answer, keeps serving
#
# Env: III_URL (default ws://localhost:49134).
import asyncio
import json
import os
import threading

from iii import register_worker
from iii.helpers import create_channel_async

iii = register_worker(os.environ.get("III_URL", "ws://localhost:49134"))


async def worker_handler(input_data):
    reader, writer = input_data["reader"], input_data["writer"]
    chunks = []
    count = 0

    async for chunk in reader:
        chunks.append(chunk)
        count += 1
        await writer.send_message_async(json.dumps({"type": "progress", "chunks": count}))

    result = b"".join(chunks).decode("utf-8").upper()
    await writer.write(result.encode("utf-8"))
    await writer.close_async()

    return {"status": "done"}


async def coordinator_handler(input_data):
    input_channel = await create_channel_async(iii)
    output_channel = await create_channel_async(iii)

    progress = []
    output_channel.reader.on_message(lambda msg: progress.append(json.loads(msg)))

    await input_channel.writer.write(input_data["text"].encode("utf-8"))
    await input_channel.writer.close_async()

    trigger = asyncio.ensure_future(iii.trigger_async({
        "function_id": "transform::worker",
        "payload": {
            "reader": input_channel.reader_ref.model_dump(),
            "writer": output_channel.writer_ref.model_dump(),
        },
    }))

    result = await output_channel.reader.read_all()
    await trigger
    return {"result": result.decode("utf-8"), "progress": progress}


iii.register_function("transform::worker", worker_handler)
iii.register_function("transform::coordinator", coordinator_handler)

if __name__ == "__main__":
    # Try it (not part of the seed).
    result = iii.trigger({"function_id": "transform::coordinator", "payload": {"text": "hello, sluice"}})
    print("transform::coordinator answered:", json.dumps(result), flush=True)
    try:
        threading.Event().wait()  # serve until interrupted
    except KeyboardInterrupt:
        iii.shutdown()
