# Seed 000 "Use Channels", Example 3 (Python tab), the smallest change that
# makes it work: the handlers are async and await the channel coroutines, as
# the seed's own "API Quick Reference" and seed 001 ("await reader.read_all()",
# "await writer.close_async()") describe. Runs with every pinned PyPI version
# (0.11.6 in ../.venv-seed, 0.25.0 in ../.venv). Differences from the seed:
#   - consumer_handler/producer_handler are `async def`;
#   - `await reader.read_all()`, `await channel.writer.write(...)`,
#     `await channel.writer.close_async()` instead of the un-awaited calls;
#   - `await create_channel_async(iii_client)` and `await iii_client.trigger_async(...)`
#     (the sync forms cannot be called on the SDK's event loop);
#   - ids are "<P>pipeline_fixed::consumer" / "<P>pipeline_fixed::producer" so
#     they can live next to seed_pipeline.py's ids;
#   - engine URL from $III_URL; harness import/footer.
import harness  # first: sets OTEL_ENABLED  # isort: skip
from harness import P

import json
from iii import register_worker
from iii.channels import ChannelReader

try:  # iii-sdk >= 0.21: free function in iii.helpers
    from iii.helpers import create_channel_async
except ImportError:  # iii-sdk 0.11.x-0.16.x: instance method
    async def create_channel_async(client, buffer_size=None):
        return await client.create_channel_async(buffer_size)

iii_client = register_worker(harness.URL)


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
        "function_id": f"{P}pipeline_fixed::consumer",
        "payload": {
            "label": "batch-001",
            "reader": channel.reader_ref.model_dump(),
        },
    })

    return result


iii_client.register_function(f"{P}pipeline_fixed::consumer", consumer_handler)
iii_client.register_function(f"{P}pipeline_fixed::producer", producer_handler)

if __name__ == "__main__":
    harness.serve(iii_client)
