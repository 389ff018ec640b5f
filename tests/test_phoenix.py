"""Opt-in, slow: a real trace backend, Arize Phoenix, receives a job over OTLP
and gives its runs, span events, pending and mirror spans back through its REST API;
a LangChain LLM app mixed with our runnables gives back its LLM, tool and retriever
content (OpenInference attributes), one span per run and its session.

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

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _liveness as liveness
from otel_runnables import _telemetry as telemetry
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
    assert mirror["name"] == "progress (event)"
    assert mirror["attributes"]["otel_runnables.event.name"] == "progress"
    assert mirror["parent_id"] == first["context"]["span_id"]
    assert mirror["span_kind"] == "CHAIN"  # its run's kind, not UNKNOWN
    for pending in by_type["pending"]:
        run = next(
            r
            for r in by_type["run"]
            if r["attributes"]["otel_runnables.run.id"] == pending["attributes"]["otel_runnables.run.id"]
        )
        assert pending["parent_id"] == run["context"]["span_id"]
        assert pending["name"] == f"{run['name']} (started)" and pending["span_kind"] == run["span_kind"]

    print(f"\nPhoenix round trip: {time.monotonic() - started:.1f} s after the server was up")


def _attribute(span: dict[str, Any], key: str) -> Any:
    """A span attribute as Phoenix returns it: flat (``a.b.c``) or nested (``{"a": {"b": ...}}``)."""
    attributes = span["attributes"]
    if key in attributes:
        return attributes[key]
    value: Any = attributes
    for part in key.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def test_a_langchain_llm_app_reads_back_from_phoenix(exporting_to: str) -> None:
    """The parts of the LLM app (prompt, model answer, tool, retriever) are those of
    benchmarks/langchain_llm_app.py, on which the coverage table is measured too."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.runnables import RunnableLambda as LcLambda

    from benchmarks.langchain_llm_app import METADATA, PROMPT, Shelf, lookup, tool_call_answer
    from otel_runnables.integrations.langchain import instrument_langchain, uninstrument_langchain

    model = GenericFakeChatModel(messages=iter([tool_call_answer()]))
    trace_ids: list[str] = []

    def remember_trace(message: Any) -> Any:
        from opentelemetry import trace

        trace_ids.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
        return message

    # ours first: the LangChain steps nest under it, in one trace
    app = (
        RunnableLambda(remember_trace, name="weather_job")
        | PROMPT
        | model
        | LcLambda(lambda message: lookup.invoke(message.tool_calls[0]), name="run_tools")
    )
    retrieve = RunnableLambda(lambda query: Shelf().invoke(query), name="find")
    instrument_langchain()
    try:
        app.invoke({"city": "Paris"}, {"metadata": METADATA})  # session-42, user-7
        (retrieve | RunnableLambda(remember_trace)).invoke("Paris")
    finally:
        uninstrument_langchain()
    assert telemetry.force_flush()

    runs = [s for s in spans_of_trace(exporting_to, trace_ids[0], expected=12) if s["name"] != "progress"]
    runs = [s for s in runs if _attribute(s, "otel_runnables.span_type") == "run"]
    by_name = {span["name"]: span for span in runs}
    assert set(by_name) >= {
        "weather_job",
        "ChatPromptTemplate",
        "GenericFakeChatModel",
        "run_tools",
        "lookup",
    }
    ids = [_attribute(s, "otel_runnables.run.id") for s in runs]
    assert len(ids) == len(set(ids)), "a run reached Phoenix twice"

    chat = by_name["GenericFakeChatModel"]
    assert chat["span_kind"] == "LLM"
    assert chat["parent_id"] == by_name["RunnableSequence"]["context"]["span_id"]
    assert _attribute(chat, "llm.model_name") == "fake-gpt-1"
    assert _attribute(chat, "llm.input_messages.1.message.role") == "user"
    assert _attribute(chat, "llm.input_messages.1.message.content") == "Weather in Paris?"
    assert _attribute(chat, "llm.output_messages.0.message.content") == "Let me look that up."
    tool_call = "llm.output_messages.0.message.tool_calls.0.tool_call"
    assert _attribute(chat, f"{tool_call}.function.name") == "lookup"
    assert _attribute(chat, "llm.token_count.prompt") == 12
    assert _attribute(chat, "llm.token_count.completion") == 5
    assert _attribute(chat, "llm.token_count.total") == 17
    assert json.loads(_attribute(chat, "gen_ai.input.messages"))[0]["role"] == "user"
    for span in runs:
        assert _attribute(span, "session.id") == "session-42", span["name"]
        assert _attribute(span, "user.id") == "user-7", span["name"]

    tool_span = by_name["lookup"]
    assert tool_span["span_kind"] == "TOOL"
    assert _attribute(tool_span, "tool.name") == "lookup"
    assert _attribute(tool_span, "tool.description") == "Look up the weather of a city."

    retrieval = [
        s
        for s in spans_of_trace(exporting_to, trace_ids[1], expected=4)
        if _attribute(s, "otel_runnables.span_type") == "run"
    ]
    (shelf,) = [s for s in retrieval if s["name"] == "Shelf"]
    assert shelf["span_kind"] == "RETRIEVER"
    assert _attribute(shelf, "retrieval.documents.0.document.content") == "Paris is in France"
    assert _attribute(shelf, "retrieval.documents.0.document.score") == 0.9
