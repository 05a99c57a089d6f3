# Seed 000 "Use Channels", Example 3: Streaming Data Between Functions
# (Python tab), AS WRITTEN. The API it uses (iii_client.create_channel() as an
# instance method) is that of PyPI iii-sdk 0.11.x-0.16.x: run it with
# ../.venv-seed (0.11.6). Differences from the seed text, nothing else changed:
#   - engine URL from $III_URL (the seed hard-codes "ws://localhost:49134");
#   - function ids prefixed with P ("<WORKER_PREFIX>." or "" when unset);
#   - harness import/footer (READY when run on its own, SIGTERM).
#
# KNOWN SEED BUG (every PyPI version): ChannelWriter.write() and
# ChannelReader.read_all() are coroutines, but these handlers are sync and
# never await them. The producer writes nothing; the consumer fails with
# invocation_failed "'coroutine' object has no attribute 'decode'", so the
# producer fails too. seed_pipeline_fixed.py is the working variant.
# With iii-sdk 0.25.0 the producer already fails earlier: no create_channel
# method (AttributeError -> invocation_failed).
import harness  # (not part of the seed) first: sets OTEL_ENABLED  # isort: skip
from harness import P  # (not part of the seed)

import json
from iii import register_worker
from iii.channels import ChannelReader

iii_client = register_worker(harness.URL)


def consumer_handler(input_data):
    reader: ChannelReader = input_data["reader"]
    raw = reader.read_all()
    records = json.loads(raw.decode("utf-8"))
    total = sum(r["value"] for r in records)

    return {
        "label": input_data["label"],
        "count": len(records),
        "total": total,
    }


def producer_handler(input_data):
    records = input_data["records"]
    channel = iii_client.create_channel()

    payload = json.dumps(records).encode("utf-8")
    channel.writer.write(payload)
    channel.writer.close()

    result = iii_client.trigger({
        "function_id": f"{P}pipeline::consumer",
        "payload": {
            "label": "batch-001",
            "reader": channel.reader_ref.model_dump(),
        },
    })

    return result


iii_client.register_function(f"{P}pipeline::consumer", consumer_handler)
iii_client.register_function(f"{P}pipeline::producer", producer_handler)

# --- harness footer (not part of the seed) ---
if __name__ == "__main__":
    harness.serve(iii_client)
