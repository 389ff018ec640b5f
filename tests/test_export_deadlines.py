"""Flush, shutdown and process exit are bounded by the export timeout, whatever the
collector does: refuse connections (dead), accept and never answer (black hole), or
answer a byte a second (drip), over OTLP/HTTP and OTLP/gRPC. They say False when not
everything was delivered, and what was given up on is counted and logged.

The collectors are real servers on 127.0.0.1 in this process; exit times are measured
on real scripts in subprocesses. The bounds are behavioural and generous (the export
timeout plus a second, plus slack for a loaded machine): without them a black-holed
exit took a timeout per batch, and a dripping collector held the process forever."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _telemetry as telemetry
from otel_runnables._export_health import BoundedBatchSpanProcessor
from tests.bad_servers import BlackHole, Drip
from tests.child_process import clean_environment, run_captured
from tests.conftest import PROVIDER
from tests.otlp_receiver import grpc_receiver, http_receiver

# a loaded machine: interpreter teardown, thread wake-ups (5.2 s was seen for a 2 s
# timeout with ten processes competing for two cores; unbounded took 10 s to forever)
SLACK_S = 5.0


def refused_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: connections are refused


@pytest.fixture(params=["dead", "black hole", "drip"])
def bad_collector(request: pytest.FixtureRequest) -> Iterator[str]:
    """The base endpoint of a collector that never takes a span."""
    if request.param == "dead":
        yield f"http://127.0.0.1:{refused_port()}"
        return
    server = BlackHole() if request.param == "black hole" else Drip(every=1.0, lasting=120)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.close()


@pytest.fixture
def restored() -> Iterator[None]:
    yield
    telemetry.shutdown(timeout_millis=100)
    telemetry.set_tracer_provider(PROVIDER)


def work(x: int) -> int:
    dispatch_custom_event("progress", {"step": x})
    return x


def only_batch(setup: telemetry.TelemetrySetup) -> BoundedBatchSpanProcessor:
    (processor,) = setup.processors
    assert isinstance(processor, BoundedBatchSpanProcessor)
    return processor


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_flush_and_shutdown_keep_their_timeout_and_say_false(
    restored: None, protocol: str, bad_collector: str
) -> None:
    setup = telemetry.configure(
        endpoint=bad_collector, protocol=protocol, timeout=1.5, store=False, set_global=False
    )
    batch = only_batch(setup)
    assert batch.export_timeout == 1.5
    for i in range(1_000):
        assert RunnableLambda(work).invoke(i) == i
    started = time.monotonic()
    assert telemetry.force_flush(timeout_millis=500) is False
    assert time.monotonic() - started < 0.5 + SLACK_S
    started = time.monotonic()
    assert telemetry.shutdown() is False  # the default: the export timeout
    assert time.monotonic() - started < 1.5 + 1 + SLACK_S
    assert batch.unexported > 0 or batch.exporter.failed > 0  # type: ignore[attr-defined]
    assert telemetry.shutdown() is True  # nothing left to do


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_healthy_collector_gets_everything_and_flush_says_true(restored: None, protocol: str) -> None:
    receiver = http_receiver() if protocol == "http/protobuf" else grpc_receiver()
    with receiver as (endpoint, received):
        setup = telemetry.configure(endpoint=endpoint, protocol=protocol, store=False, set_global=False)
        for i in range(700):  # more than one batch
            RunnableLambda(work).invoke(i)
        assert telemetry.force_flush(timeout_millis=30_000) is True
        assert len({span.span_id for span in received.spans}) == 700
        RunnableLambda(work).invoke(700)
        assert telemetry.shutdown(timeout_millis=30_000) is True
        assert len(received.spans) == 701
        assert only_batch(setup).unexported == 0


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "3"}, 3.0),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "3", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0.5"}, 0.5),
        ({}, 10.0),
    ],
)
def test_the_otlp_timeout_variables_are_honoured(
    restored: None, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: float
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    black_hole = BlackHole()
    try:
        setup = telemetry.configure(
            endpoint=f"http://127.0.0.1:{black_hole.port}", store=False, set_global=False
        )
        batch = only_batch(setup)
        assert batch.export_timeout == expected
        if expected < 1:
            RunnableLambda(work).invoke(1)
            started = time.monotonic()
            assert telemetry.shutdown() is False
            assert time.monotonic() - started < expected + 1 + SLACK_S
    finally:
        black_hole.close()


def test_a_bad_timeout_variable_is_named(restored: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "soon")
    with pytest.raises(telemetry.ConfigurationError, match="OTEL_EXPORTER_OTLP_TRACES_TIMEOUT='soon'"):
        telemetry.configure(endpoint="http://127.0.0.1:1", store=False, set_global=False)


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from otel_runnables import RunnableLambda, dispatch_custom_event

    def work(x):
        dispatch_custom_event("progress", {"step": x})
        return x

    runnable = RunnableLambda(work)
    for i in range(int(sys.argv[1])):
        runnable.invoke(i)
    print("END", time.monotonic(), flush=True)
    """
)


def exit_seconds(
    endpoint: str, protocol: str, runs: int, tmp_path: Path, **variables: str
) -> tuple[float, str]:
    """Seconds from the script's last line to the end of its process, and its stderr."""
    env = clean_environment(
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_RUNNABLES_STORE=str(tmp_path / "traces.sqlite3"),
        **variables,
    )
    done = run_captured([sys.executable, "-c", SCRIPT, str(runs)], env, 300)
    ended = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("END ")]
    return ended - float(line.split()[1]), done.stderr


@pytest.mark.parametrize("runs", [10, 3_000])
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_script_exits_within_the_export_timeout(
    tmp_path: Path, protocol: str, runs: int, bad_collector: str
) -> None:
    timeout = 2.0
    seconds, stderr = exit_seconds(
        bad_collector, protocol, runs, tmp_path, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=str(timeout)
    )
    print(f"exit took {seconds:.2f} s ({protocol}, {runs} runs, timeout {timeout:g} s)")
    assert seconds < timeout + 1 + SLACK_S
    # what was lost is said, not silent
    assert "were not exported" in stderr or "could not export" in stderr, stderr
    assert "Traceback" not in stderr
