# Seed 000 "Use Channels", Example 1 (Python tab) rewritten for PyPI iii-sdk
# 0.25.0 (../.venv). Differences from seed_download.py:
#   - `http` comes from `iii_helpers.http` (iii.utils.http is gone);
#   - the request/response types are `iii.types.StreamRequest` / `StreamResponse`.
# register_trigger still works in 0.25.0 but logs a DeprecationWarning.
import harness  # first: sets OTEL_ENABLED  # isort: skip
from harness import P, ROUTE

import os
from iii import register_worker
from iii_helpers.http import http
from iii.types import StreamRequest, StreamResponse

DATA_DIR = os.environ.get("DATA_DIR", "/data/reports")

iii = register_worker(os.environ.get("III_URL", "ws://localhost:49134"))


@http
async def download_file(req: StreamRequest, response: StreamResponse):
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

if __name__ == "__main__":
    harness.serve(iii)
