"""configure() checks every argument before anything changes, and a bad one raises
ConfigurationError naming the argument and the form it expects."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_runnables import ConfigurationError, RunnableLambda
from otel_runnables import _telemetry as telemetry
from otel_runnables._arguments import CHECKS
from tests.conftest import PROVIDER


@pytest.fixture
def restored() -> Iterator[None]:
    telemetry.shutdown(timeout_millis=100)
    telemetry.set_tracer_provider(PROVIDER)
    yield
    telemetry.shutdown(timeout_millis=100)
    telemetry.set_tracer_provider(PROVIDER)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"endpoint": 4318}, "configure(endpoint=4318): expected the collector's base URL as a str"),
    (
        {"endpoint": "localhost:4318"},
        'starting with http:// or https://, e.g. endpoint="http://localhost:4318"',
    ),
    ({"endpoint": "http://"}, "starting with http:// or https://"),
    ({"endpoint": "http://localhost:99999"}, "a valid port"),
    ({"protocol": "http"}, "configure(protocol='http'): expected one of 'http/protobuf', 'grpc'"),
    ({"protocol": "grpc/json", "endpoint": "http://localhost:4317"}, "protocol='grpc/json'"),
    ({"exporters": "otlp"}, "configure(exporters='otlp'): expected a list of names, e.g. ['otlp']"),
    ({"exporters": ["otlp", "zipkin"]}, "unknown: ['zipkin']"),
    ({"headers": "Authorization=Bearer x"}, "configure(headers='Authorization=Bearer x'): expected a dict"),
    ({"timeout": 0}, "configure(timeout=0): expected a number of seconds > 0"),
    ({"timeout": "10"}, "configure(timeout='10')"),
    ({"timeout": float("nan")}, "configure(timeout=nan)"),
    ({"compression": "brotli"}, "one of 'gzip', 'deflate', 'none'"),
    ({"certificate_file": "/no/such/ca.pem"}, "an existing PEM file"),
    ({"store": 7}, "configure(store=7): expected False (no store), True, or the path"),
    ({"store": ""}, "configure(store='')"),
    ({"liveness_spans": "yes"}, "configure(liveness_spans='yes'): expected True or False"),
    ({"liveness_after": -1}, "configure(liveness_after=-1): expected a number of seconds >= 0"),
    ({"span_exporters": InMemorySpanExporter()}, "expected a list of SpanExporter instances"),
    ({"span_exporters": [print]}, "configure(span_exporters=[<built-in function print>])"),
    ({"tracer_provider": "global"}, "expected an opentelemetry TracerProvider"),
    ({"set_global": None}, "configure(set_global=None): expected True or False"),
    ({"service_name": ""}, "configure(service_name=''): expected a non-empty str"),
]


@pytest.mark.parametrize(
    ("arguments", "message"),
    BAD,
    ids=[re.sub(" at 0x[0-9a-f]+", "", str(a)) for a, _ in BAD],  # the same in every process
)
def test_a_bad_argument_is_named_with_the_form_expected(
    restored: None, spans: Any, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        telemetry.configure(**arguments)
    assert message in str(refused.value)
    # nothing changed: no setup was made, runs still go where they went
    assert telemetry.current_setup() is None
    RunnableLambda(lambda x: x).invoke(1)
    assert [span.name for span in spans()]


def test_header_values_never_appear_in_the_error() -> None:
    with pytest.raises(ConfigurationError) as refused:
        telemetry.configure(headers={"authorization": "Bearer s3cret", "x-retries": 3})
    assert "s3cret" not in str(refused.value)
    assert "'authorization': <str>" in str(refused.value) and "'x-retries': <int>" in str(refused.value)


def test_every_argument_of_configure_is_checked() -> None:
    assert set(inspect.signature(telemetry.configure).parameters) == set(CHECKS)


def test_good_arguments_pass(restored: None, tmp_path: Path) -> None:
    certificate = tmp_path / "ca.pem"
    certificate.write_text("not checked here: only that the file exists")
    setup = telemetry.configure(
        service_name="svc",
        exporters=["console"],
        endpoint=None,
        protocol="GRPC",
        headers={"authorization": "Bearer x"},
        timeout=2.5,
        compression="gzip",
        store=tmp_path / "traces.sqlite3",
        liveness_spans=False,
        liveness_after=0,
        span_exporters=[InMemorySpanExporter()],
        set_global=False,
    )
    assert setup.exporters == ["console"]
