"""A worker job and a follower, each in its own process, for the follow tests.

The worker runs ``job``: 5 progress events on the root run, each followed by
a child run ``transform`` with a ``row`` event; after the 2nd progress event
it says so on stdout and waits for a gate file, so a follower can attach at
exactly that point. Modes: ``ok``, ``fail`` (raises at the end), ``hang``
(never ends: for a kill).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.child_process import clean_environment

WORKER = """
import sys, time, uuid, pathlib
import otel_runnables
from otel_runnables import RunnableLambda, dispatch_custom_event

store, run_id, gate, mode, pause = sys.argv[1:6]
otel_runnables.configure(store=store)


def transform(step):
    dispatch_custom_event("row", {"step": step, "rows": step * 10})
    return step * 10


def job(total):
    for step in range(1, total + 1):
        if step == 3:
            otel_runnables.force_flush()  # steps 1 and 2 are in the record
            print("attach now", flush=True)
            while not pathlib.Path(gate).exists():
                time.sleep(0.01)
        time.sleep(float(pause))
        dispatch_custom_event("progress", {"step": step, "total": total, "message": f"chunk {step}"})
        RunnableLambda(transform, name="transform").invoke(step)
    if mode == "fail":
        raise ValueError("bad row 42")
    if mode == "hang":
        otel_runnables.force_flush()  # all 5 steps are in the record
        print("hanging", flush=True)
        time.sleep(3600)
    return total


try:
    RunnableLambda(job, name="job").invoke(
        5, {"run_id": uuid.UUID(run_id), "tags": ["nightly"], "metadata": {"team": "data"}}
    )
except ValueError:
    pass
"""

FOLLOWER = """
import json, sys
import otel_runnables

run_id, options = sys.argv[1], json.loads(sys.argv[2])
try:
    for event in otel_runnables.follow_sync(run_id, **options):
        print(json.dumps(event), flush=True)
except otel_runnables.OtelRunnablesError as exc:
    print(json.dumps({"raised": type(exc).__name__, "text": str(exc),
                      "error_type": getattr(exc, "error_type", None),
                      "error_message": getattr(exc, "error_message", None)}), flush=True)
"""


def environment(store: Path) -> dict[str, str]:
    return clean_environment(OTEL_RUNNABLES_STORE=str(store), OTEL_RUNNABLES_LIVENESS_SPANS="false")


def start_worker(
    tmp: Path, store: Path, run_id: str, mode: str = "ok", pause: float = 0.4
) -> tuple[subprocess.Popen[str], Path]:
    script = tmp / "worker.py"
    script.write_text(WORKER)
    gate = tmp / f"gate-{run_id}"
    process = subprocess.Popen(
        [sys.executable, str(script), str(store), run_id, str(gate), mode, str(pause)],
        stdout=subprocess.PIPE,
        text=True,
        env=environment(store),
    )
    return process, gate


def wait_for_line(process: subprocess.Popen[str], expected: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == expected:
            return
    raise AssertionError(f"the process ended without saying {expected!r}")


def start_follower(tmp: Path, store: Path, run_id: str, **options: Any) -> subprocess.Popen[str]:
    script = tmp / "follower.py"
    script.write_text(FOLLOWER)
    return subprocess.Popen(
        [sys.executable, str(script), run_id, json.dumps({"path": str(store), **options})],
        stdout=subprocess.PIPE,
        text=True,
        env=environment(store),
    )


def lines_of(process: subprocess.Popen[str]) -> Iterator[dict[str, Any]]:
    assert process.stdout is not None
    for line in process.stdout:
        yield json.loads(line)


def expected_kinds(steps: int = 5) -> list[tuple[str, str]]:
    kinds = [("on_chain_start", "job")]
    for _ in range(steps):
        kinds += [
            ("on_custom_event", "progress"),
            ("on_chain_start", "transform"),
            ("on_custom_event", "row"),
            ("on_chain_end", "transform"),
        ]
    return kinds


def wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
