# Seed 000 "Use Channels", Example 1: File Download via HTTP Endpoint
# (Python tab), AS WRITTEN. `from iii.utils import http`, `iii.types.HttpRequest`
# / `HttpResponse` and `response.writer` are the PyPI iii-sdk 0.11.x-0.16.x API:
# run it with ../.venv-seed (0.11.6); with 0.25.0 the import fails (use
# seed_download_0_25.py). Differences from the seed text, nothing else changed:
#   - files are served from $DATA_DIR (default /data/reports, as in the seed);
#   - function id prefixed with P, api_path with ROUTE
#     ("<WORKER_PREFIX>." and "/<WORKER_PREFIX>", both "" when unset);
#   - harness import/footer (READY, SIGTERM).
import harness  # (not part of the seed) first: sets OTEL_ENABLED  # isort: skip
from harness import P, ROUTE  # (not part of the seed)

import os
from iii import register_worker
from iii.utils import http
from iii.types import HttpRequest, HttpResponse

DATA_DIR = os.environ.get("DATA_DIR", "/data/reports")

iii = register_worker(os.environ.get("III_URL", "ws://localhost:49134"))


@http
async def download_file(req: HttpRequest, response: HttpResponse):
    filename = req.path_params.get("filename")
    file_path = f"{DATA_DIR}/{filename}"

    with open(file_path, "rb") as f:
        await response.status(200)
        await response.headers({"content-type": "application/pdf"})
        await response.writer.write(f.read())
        await response.writer.close_async()

iii.register_function(f"{P}files::download", download_file)

iii.register_trigger({
    "type": "http",
    "function_id": f"{P}files::download",
    "config": {"api_path": f"{ROUTE}/files/:filename", "http_method": "GET"},
})

# --- harness footer (not part of the seed) ---
if __name__ == "__main__":
    harness.serve(iii)
