# Seed "Use Channels", Example 1: File Download via HTTP Endpoint, for PyPI
# iii-sdk 0.25.0 (see ../README.md for what changed since the seed's 0.11 API).
#
#   .venv/bin/python download.py   then: curl -OJ http://127.0.0.1:3111/files/quarterly-report.pdf
#
# Env: III_URL (default ws://localhost:49134), DATA_DIR (default /data/reports).
import os
import threading

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

iii.register_function("files::download", download_file)

iii.register_trigger({
    "type": "http",
    "function_id": "files::download",
    "config": {"api_path": "/files/:filename", "http_method": "GET"},
})

if __name__ == "__main__":
    try:
        threading.Event().wait()  # serve until interrupted
    except KeyboardInterrupt:
        iii.shutdown()
