"""A worker process runs a job; an API process streams its progress over
server-sent events; a client prints it. Three processes, one store file.

    .venv/bin/pip install -e ".[web]"
    .venv/bin/python examples/worker_and_api.py

- worker: ``python worker_and_api.py worker <run id>`` runs the job (5 steps,
  a progress event each) and writes it to the embedded store;
- API: ``python worker_and_api.py api <port>`` serves ``otel_runnables.web.app``
  (the same routes ``otel-runnables serve`` has) with uvicorn;
- client (this process): reads ``GET /api/runs/<run id>/events`` with the
  standard library and prints each event until the stream's ``end``. In a
  browser, ``new EventSource("/api/runs/<run id>/events")`` does the same.

The client connects while the job runs: it gets what already happened, then
each step as it is recorded. Everything goes to a temporary store file unless
OTEL_RUNNABLES_STORE names one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path


def worker(run_id: str) -> None:
    from otel_runnables import RunnableLambda, dispatch_custom_event, force_flush

    def resize(image: str) -> str:
        time.sleep(0.3)  # the real work
        return image.replace(".png", "-small.png")

    def job(images: list[str]) -> list[str]:
        done = []
        for number, image in enumerate(images, start=1):
            done.append(RunnableLambda(resize, name="resize").invoke(image))
            dispatch_custom_event("progress", {"step": number, "total": len(images), "message": image})
        return done

    RunnableLambda(job, name="thumbnails").invoke(
        [f"img{n}.png" for n in range(1, 6)], {"run_id": uuid.UUID(run_id)}
    )
    force_flush()


def api(port: int) -> None:
    import uvicorn

    from otel_runnables.web import app

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def client(url: str) -> None:
    """Server-sent events by hand: ``event:`` / ``id:`` / ``data:`` lines, a blank line ends one."""
    with urllib.request.urlopen(url, timeout=60) as stream:
        kind, data = "", ""
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
            elif line == "" and kind:
                event = json.loads(data)
                if kind == "end":
                    print(f"end: {event['status']}")
                    return
                if kind == "on_custom_event":
                    step = event["data"]
                    print(f"  {event['name']} {step['step']}/{step['total']}: {step['message']}")
                else:
                    print(f"{kind:<16} {event['name']}")
                kind, data = "", ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    folder = tempfile.mkdtemp(prefix="worker_and_api-")
    env = {
        **os.environ,
        "OTEL_RUNNABLES_STORE": os.environ.get("OTEL_RUNNABLES_STORE", str(Path(folder) / "traces.sqlite3")),
    }
    run_id, port = str(uuid.uuid4()), _free_port()
    me = [sys.executable, __file__]
    api_process = subprocess.Popen([*me, "api", str(port)], env=env)
    worker_process = None
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/api/runs?last=1")
        worker_process = subprocess.Popen([*me, "worker", run_id], env=env)
        time.sleep(0.8)  # the job is under way: its first steps come from its record
        print(f"following run {run_id} through {base}/api/runs/{run_id}/events")
        client(f"{base}/api/runs/{run_id}/events")
        worker_process.wait(60)
    finally:
        if worker_process is not None and worker_process.poll() is None:
            worker_process.kill()
        api_process.terminate()
        api_process.wait(30)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "api":
        api(int(sys.argv[2]))
    else:
        main()
