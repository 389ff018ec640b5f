"""Secrets never leave the process: planted in every place a payload can be,
then searched for in every byte that would leave it — the OTLP protobuf of
every span and the embedded store's files — while in-process consumers still
get the real objects."""

from __future__ import annotations

import collections
import contextlib
import json
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_runnables import BaseCallbackHandler, RunnableLambda, dispatch_custom_event
from otel_runnables import _liveness as liveness
from otel_runnables._store import LocalStoreSpanProcessor

ROOT = Path(__file__).resolve().parent.parent
SECRETS = [f"SECRET-{n}-x9q" for n in range(12)]


class Heard(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.inputs: list[Any] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.inputs.append(inputs)

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append(data)


def plant(heard: Heard) -> None:
    s = SECRETS

    def inner(payload: dict[str, Any]) -> dict[str, Any]:
        dispatch_custom_event("progress", {"step": 1, "api_key": s[0], "nested": {"password": s[1]}})
        dispatch_custom_event("login", {"Authorization": f"Bearer {s[2]}", "X-Api-Key": s[3]})
        return {"access_token": s[4], "rows": [{"client_secret": s[5]}], "ok": True}

    def outer(payload: dict[str, Any]) -> Any:
        return RunnableLambda(inner).invoke({"user": "ann", "credentials": {"passwd": s[6]}})

    job = RunnableLambda(outer).with_config(
        metadata={"session": s[7], "db_password": s[8], "team": "data", "cookie": s[9]}
    )
    job.invoke({"private_key": s[10], "auth": {"token": s[11]}, "query": "visible"}, {"callbacks": [heard]})


@pytest.fixture
def all_liveness() -> Any:
    before = liveness.liveness_delay()
    liveness.configure_liveness(True, 0)  # pending and mirror spans carry payloads too
    yield
    liveness.configure_liveness(before is not None, before)


def everything_written(
    planter: Callable[[Heard], None], tmp_path: Path, use_provider: Callable[[Any], None]
) -> tuple[Heard, bytes, bytes]:
    """What ``planter`` heard in process, the OTLP bytes of every span, and the store's files."""
    exporter = InMemorySpanExporter()
    store = LocalStoreSpanProcessor(tmp_path / "traces.sqlite3")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(store)
    use_provider(provider)
    heard = Heard()
    planter(heard)
    store.shutdown()
    spans = exporter.get_finished_spans()
    assert {span.attributes.get("otel_runnables.span_type") for span in spans} == {"run", "pending", "event"}  # type: ignore[union-attr]
    files = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    return heard, encode_spans(spans).SerializeToString(), files


def test_no_secret_in_any_exported_byte(
    all_liveness: None, tmp_path: Path, use_provider: Callable[[Any], None]
) -> None:
    heard, wire, files = everything_written(plant, tmp_path, use_provider)
    assert b"visible" in wire and b"visible" in files  # payloads are there...
    assert b"[REDACTED]" in wire and b"[REDACTED]" in files
    for secret in SECRETS:  # ...secrets are not
        assert secret.encode() not in wire, secret
        assert secret.encode() not in files, secret

    # in-process consumers get the real objects
    assert heard.events[0]["api_key"] == SECRETS[0]
    assert heard.events[1]["X-Api-Key"] == SECRETS[3]
    assert heard.inputs[0]["private_key"] == SECRETS[10]


def test_capture_off_leaves_no_payload_at_all(
    all_liveness: None,
    tmp_path: Path,
    use_provider: Callable[[Any], None],
    setenv: Callable[[str, str], None],
) -> None:
    setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "false")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_provider(provider)
    plant(Heard())
    wire = encode_spans(exporter.get_finished_spans()).SerializeToString()
    assert b"visible" not in wire and b"ann" not in wire
    assert b"otel_runnables.input.type" in wire


GAPS = [f"GAP{n}x7Qz2Lm9Kp4Rt8" for n in range(14)]


class Holder:
    def __init__(self, api_key: str) -> None:
        self.api_key, self.region = api_key, "eu"


def plant_gaps(heard: Heard) -> None:
    """Secrets where names and shapes are all there is to go on."""
    g = GAPS
    login = collections.namedtuple("login", "user password")

    def inner(payload: Any) -> Any:
        dispatch_custom_event("creds", types.SimpleNamespace(user="ann", passphrase=g[0]))
        dispatch_custom_event("note", f"retrying with Bearer {g[1]} and sk-proj-{g[2]}")
        raise ValueError(f"login refused for key sk-ant-{g[3]} (jwt eyJhbGciOi{g[4]}.eyJzdWIi{g[5]}.sig)")

    def outer(payload: Any) -> Any:
        with contextlib.suppress(ValueError):
            RunnableLambda(inner).invoke([("Authorization", f"Token {g[6]}"), ("Accept", "json")])
        return {"pwd": g[7], "private": g[8], "bearer": g[9], "openai_key": g[10]}

    job = RunnableLambda(outer).with_config(metadata={"endpoint": f"https://ann:{g[11]}@api.example.com"})
    job.invoke(
        {"login": login("ann", g[12]), "service": Holder(g[13]), "query": "visible"}, {"callbacks": [heard]}
    )


def test_no_secret_in_any_exported_byte_where_names_and_shapes_are_all_there_is(
    all_liveness: None, tmp_path: Path, use_provider: Callable[[Any], None]
) -> None:
    heard, wire, files = everything_written(plant_gaps, tmp_path, use_provider)
    assert b"visible" in wire and b"visible" in files
    assert b"login refused for key" in wire and b"login refused for key" in files  # the error is there
    assert b"api.example.com" in wire and b"Holder" in wire  # objects show their type and fields
    for secret in GAPS:
        assert secret.encode() not in wire, secret
        assert secret.encode() not in files, secret
    assert not re.search(rb"at 0x[0-9a-f]{6,}", wire)
    assert heard.inputs[0]["login"].password == GAPS[12]  # handlers get the real objects


def test_metadata_values_can_be_kept_out(
    spans: Callable[[], list[Any]], setenv: Callable[[str, str], None]
) -> None:
    RunnableLambda(lambda x: x).invoke(1, {"metadata": {"customer": "ann@example.com"}, "tags": ["t"]})
    setenv("OTEL_RUNNABLES_CAPTURE_METADATA", "false")
    RunnableLambda(lambda x: x).invoke(1, {"metadata": {"customer": "ann@example.com"}, "tags": ["t"]})
    kept, withheld = (dict(span.attributes or {}) for span in spans())
    assert kept["otel_runnables.run.metadata.customer"] == "ann@example.com"
    assert "ann@example.com" not in json.dumps(withheld)
    assert json.loads(withheld["metadata"]) == {"customer": "<str>"}  # which keys, not what they hold
    assert withheld["tag.tags"] == ("t",)  # tags are always recorded


def test_the_key_list_is_configurable() -> None:
    code = """
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from otel_runnables import RunnableLambda, _telemetry as telemetry
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        telemetry.set_tracer_provider(provider)
        RunnableLambda(lambda x: x).invoke({"ssn": "123-45-6789", "password": "hunter2"})
        (span,) = exporter.get_finished_spans()
        print(span.attributes["input.value"])
    """

    def run(keys: str) -> str:
        env = {"PYTHONPATH": str(ROOT), "OTEL_RUNNABLES_REDACT_KEYS": keys, "OTEL_RUNNABLES_STORE": "none"}
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, check=True
        )
        return done.stdout

    extended = run("+ssn")
    assert "123-45-6789" not in extended and "hunter2" not in extended
    replaced = run("ssn")
    assert "123-45-6789" not in replaced and "hunter2" in replaced
