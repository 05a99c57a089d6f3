"""Shared plumbing for the Python interop scripts (every pinned iii-sdk version).

Import it FIRST: its top level runs before any ``register_worker()`` call.
It imports nothing from ``iii``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

# OTel is on by default in the Python SDK (it opens <III_URL>/otel). The tests
# do not need it; an explicit OTEL_ENABLED in the environment still wins.
os.environ.setdefault("OTEL_ENABLED", "false")

#: WORKER_PREFIX as given ("" when unset).
PREFIX = os.environ.get("WORKER_PREFIX", "")
#: Prefix for seed function ids: "py25." when WORKER_PREFIX=py25, "" when unset.
P = f"{PREFIX}." if PREFIX else ""
#: Prefix for seed HTTP routes: "/py25" when WORKER_PREFIX=py25, "" when unset.
ROUTE = f"/{PREFIX}" if PREFIX else ""
#: Engine URL.
URL = os.environ.get("III_URL", "ws://localhost:49134")


def out(line: str) -> None:
    """Print one marker line on stdout, flushed."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


_clients: list = []


def track(client):
    """Remember an SDK client so SIGTERM shuts it down."""
    if client not in _clients:
        _clients.append(client)
    return client


def _shutdown(client) -> None:
    try:
        client.shutdown()
    except Exception as e:  # noqa: BLE001 - best effort on the way out
        sys.stderr.write(f"shutdown: {e!r}\n")


def serve(*clients) -> None:
    """Print READY, then block the main thread until SIGTERM/SIGINT; then shut
    every tracked client down (in parallel, bounded) and exit 0. Call from the
    main thread."""
    for c in clients:
        track(c)
    stop = threading.Event()

    def on_signal(_signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    out("READY")
    stop.wait()

    # Bounded: a wedged socket must not keep the process alive.
    threads = [threading.Thread(target=_shutdown, args=(c,), daemon=True) for c in _clients]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 3
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's event-loop thread is non-daemon; leave without waiting for it.
    os._exit(0)
