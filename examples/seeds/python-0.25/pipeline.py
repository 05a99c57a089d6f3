# Seed "Use Channels", Example 3: Streaming Data Between Functions, for PyPI
# iii-sdk 0.25.0 (see ../README.md for what changed since the seed's 0.11 API;
# the seed's sync handlers never worked: the channel calls are coroutines).
#
#   .venv/bin/python pipeline.py   registers both functions, calls the producer
#                                  once and prints the answer, keeps serving
#
# Env: III_URL (default ws://localhost:49134).
import json
import os
import threading

from iii import register_worker
from iii.channels import ChannelReader
from iii.helpers import create_channel_async

iii_client = register_worker(os.environ.get("III_URL", "ws://localhost:49134"))


async def consumer_handler(input_data):
    reader: ChannelReader = input_data["reader"]
    raw = await reader.read_all()
    records = json.loads(raw.decode("utf-8"))
    total = sum(r["value"] for r in records)

    return {
        "label": input_data["label"],
        "count": len(records),
        "total": total,
    }


async def producer_handler(input_data):
    records = input_data["records"]
    channel = await create_channel_async(iii_client)

    payload = json.dumps(records).encode("utf-8")
    await channel.writer.write(payload)
    await channel.writer.close_async()

    result = await iii_client.trigger_async({
        "function_id": "pipeline::consumer",
        "payload": {
            "label": "batch-001",
            "reader": channel.reader_ref.model_dump(),
        },
    })

    return result


iii_client.register_function("pipeline::consumer", consumer_handler)
iii_client.register_function("pipeline::producer", producer_handler)

if __name__ == "__main__":
    # Try it (not part of the seed).
    records = [{"name": "a", "value": 10}, {"name": "b", "value": 20}, {"name": "c", "value": 30}]
    result = iii_client.trigger({"function_id": "pipeline::producer", "payload": {"records": records}})
    print("pipeline::producer answered:", json.dumps(result), flush=True)
    try:
        threading.Event().wait()  # serve until interrupted
    except KeyboardInterrupt:
        iii_client.shutdown()
