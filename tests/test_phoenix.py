"""Opt-in, slow: a real trace backend, Arize Phoenix, receives a job over OTLP
and gives its runs, span events, pending and mirror spans back through its REST API.

Phoenix pins its own OpenTelemetry versions, so it lives in its own virtualenv;
``bash tests/run_phoenix.sh`` makes it and runs this test. By hand:
``OTEL_RUNNABLES_PHOENIX=1 pytest -m phoenix tests/test_phoenix.py``, with the
``phoenix`` command at ``OTEL_RUNNABLES_PHOENIX_BIN``, ``.venvs/phoenix/bin/phoenix``
or on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_runnables import RunnableLambda, dispatch_custom_event, liveness, telemetry
from tests.conftest import PROVIDER

pytestmark = [
    pytest.mark.phoenix,
    pytest.mark.skipif(
        os.environ.get("OTEL_RUNNABLES_PHOENIX") != "1",
        reason="opt-in: set OTEL_RUNNABLES_PHOENIX=1 (or run tests/run_phoenix.sh)",
    ),
]

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 120
ARRIVAL_SECONDS = 30


def phoenix_command() -> str:
    candidates = [
        os.environ.get("OTEL_RUNNABLES_PHOENIX_BIN"),
        str(ROOT / ".venvs" / "phoenix" / "bin" / "phoenix"),
        shutil.which("phoenix"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "the phoenix command was not found: run tests/run_phoenix.sh, or install arize-phoenix "
        "in a virtualenv of its own and set OTEL_RUNNABLES_PHOENIX_BIN to its bin/phoenix"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def phoenix_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
    }
    log = (workdir / "phoenix.log").open("wb")
    server = subprocess.Popen([phoenix_command(), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"phoenix serve exited with {server.returncode}; see {workdir / 'phoenix.log'}")
            try:
                get_json(f"{url}/v1/projects")
                break
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                if time.monotonic() > deadline:
                    pytest.fail(f"phoenix did not answer within {STARTUP_SECONDS} s")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def exporting_to(phoenix_url: str) -> Iterator[str]:
    before = liveness.liveness_delay()
    telemetry.configure(
        endpoint=phoenix_url,
        protocol="http/protobuf",
        store=False,
        set_global=False,
        service_name="otel-runnables-phoenix-test",
        liveness_after=0,
    )
    yield phoenix_url
    telemetry.shutdown()
    telemetry.set_tracer_provider(PROVIDER)
    liveness.configure_liveness(before is not None, before)


def spans_of_trace(url: str, trace_id: str, expected: int) -> list[dict[str, Any]]:
    """The trace's spans, once at least ``expected`` of them have arrived."""
    deadline = time.monotonic() + ARRIVAL_SECONDS
    while True:
        body = get_json(f"{url}/v1/projects/default/spans?limit=1000")
        spans = [span for span in body["data"] if span["context"]["trace_id"] == trace_id]
        if len(spans) >= expected or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


def test_a_job_reads_back_from_phoenix(exporting_to: str) -> None:
    started = time.monotonic()
    trace_ids: list[str] = []

    def step(x: int) -> int:
        from opentelemetry import trace

        trace_ids.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
        dispatch_custom_event("progress", {"step": 1, "total": 2, "token": "sk-live-123"})
        return x + 1

    job = (RunnableLambda(step) | RunnableLambda(lambda x: x * 2)).with_config(
        run_name="nightly", metadata={"team": "data"}
    )
    assert job.invoke(1) == 4
    assert telemetry.force_flush()

    # 3 runs, 3 pending spans (announced at once), 1 event mirror
    spans = spans_of_trace(exporting_to, trace_ids[0], expected=7)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_type.setdefault(span["attributes"]["otel_runnables.span_type"], []).append(span)
    assert {kind: len(items) for kind, items in by_type.items()} == {"run": 3, "pending": 3, "event": 1}
    span_ids = [span["context"]["span_id"] for span in spans]
    assert len(span_ids) == len(set(span_ids)), "a span id reached Phoenix twice"

    runs = {span["name"]: span for span in by_type["run"]}
    root, first = runs["nightly"], runs["step"]
    assert root["parent_id"] is None
    assert first["parent_id"] == root["context"]["span_id"]
    assert root["span_kind"] == "CHAIN"
    assert root["status_code"] != "ERROR"
    assert root["attributes"]["otel_runnables.run.metadata.team"] == "data"
    assert json.loads(root["attributes"]["output.value"]) == 4

    [event] = first["events"]
    assert event["name"] == "progress"
    assert event["attributes"]["otel_runnables.event.data.step"] == 1
    assert event["attributes"]["otel_runnables.event.data.token"] == "[REDACTED]"
    assert "sk-live-123" not in json.dumps(spans)

    [mirror] = by_type["event"]
    assert mirror["name"] == "progress"
    assert mirror["parent_id"] == first["context"]["span_id"]
    for pending in by_type["pending"]:
        run = next(
            r
            for r in by_type["run"]
            if r["attributes"]["otel_runnables.run.id"] == pending["attributes"]["otel_runnables.run.id"]
        )
        assert pending["parent_id"] == run["context"]["span_id"]

    print(f"\nPhoenix round trip: {time.monotonic() - started:.1f} s after the server was up")
