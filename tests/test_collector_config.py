"""collector-config/: every config parses, every component a pipeline names is
defined and exists in the distribution it runs on, the order of the processors
keeps memory safe and live runs flowing, and the redaction rule does what it says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIGS = Path(__file__).resolve().parent.parent / "collector-config"
KNOWN = json.loads((Path(__file__).parent / "data" / "collector_contrib_components.json").read_text())
COLLECTOR_CONFIGS = ["jaeger.yaml", "tempo.yaml", "both.yaml"]
KINDS = ("receivers", "processors", "exporters")


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((CONFIGS / name).read_text())
    assert isinstance(document, dict), name
    return document


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


@pytest.mark.parametrize("name", sorted(path.name for path in CONFIGS.glob("*.yaml")))
def test_every_file_parses(name: str) -> None:
    load(name)


@pytest.mark.parametrize(
    ("name", "known"), [*((n, KNOWN) for n in COLLECTOR_CONFIGS), ("jaeger-v2.yaml", KNOWN["jaeger_v2"])]
)
def test_pipelines_reference_defined_components_that_exist(name: str, known: dict[str, Any]) -> None:
    config = load(name)
    service = config["service"]
    for pipeline_name, pipeline in service["pipelines"].items():
        for kind in KINDS:
            for component in pipeline.get(kind, []):
                assert component in (config.get(kind) or {}), (
                    f"{name}: {pipeline_name} uses undefined {component}"
                )
    for extension in service.get("extensions", []):
        assert extension in (config.get("extensions") or {}), f"{name}: undefined extension {extension}"
    for kind in (*KINDS, "extensions"):
        for component in config.get(kind) or {}:
            assert component_type(component) in known[kind], f"{name}: {component} is not in the distribution"


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_processor_order_and_no_tail_sampling(name: str) -> None:
    for pipeline in load(name)["service"]["pipelines"].values():
        processors = [component_type(p) for p in pipeline["processors"]]
        assert processors[0] == "memory_limiter"
        assert processors.index("batch") > processors.index("transform")
        assert "tail_sampling" not in processors  # it would hold live runs' pending spans back


def redaction_patterns(name: str) -> dict[str, str]:
    """context -> the regex given to delete_matching_keys."""
    found = {}
    redact = load(name)["processors"]["transform/redact"]
    for group in [*redact["trace_statements"], *redact.get("log_statements", [])]:
        for statement in group["statements"]:
            match = re.fullmatch(r'delete_matching_keys\(attributes, "(.+)"\)', statement)
            assert match, statement
            found[group["context"]] = match.group(1)
    return found


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_redaction_covers_span_span_event_and_log_attributes(name: str) -> None:
    patterns = redaction_patterns(name)
    has_logs = "logs" in load(name)["service"]["pipelines"]
    assert set(patterns) == ({"span", "spanevent", "log"} if has_logs else {"span", "spanevent"})
    assert len(set(patterns.values())) == 1  # one rule for every signal
    for pattern in patterns.values():
        regex = re.compile(pattern)
        for secret in (
            "otel_runnables.event.data.api_key",
            "otel_runnables.run.metadata.password",
            "otel_runnables.event.data.access_token",
            "Authorization",
            "http.request.header.authorization",
            "X-Api-Key",
            "client_secret",
            "db.credentials",
        ):
            assert regex.search(secret), secret
        for plain in (
            "otel_runnables.event.data.step",
            "otel_runnables.event.data.total",
            "otel_runnables.event.data.message",
            "gen_ai.usage.input_tokens",
            "otel_runnables.run.id",
            "input.value",
        ):
            assert not regex.search(plain), plain


def test_the_liveness_filter_matches_the_library_conventions() -> None:
    from otel_runnables import _conventions as conventions

    conditions = load("both.yaml")["processors"]["filter/liveness"]["traces"]["span"]
    for span_type in (conventions.SPAN_TYPE_PENDING, conventions.SPAN_TYPE_EVENT):
        assert f'attributes["{conventions.SPAN_TYPE}"] == "{span_type}"' in conditions


def test_both_has_a_logs_pipeline_to_loki_that_keeps_the_event_name() -> None:
    from otel_runnables import _conventions as conventions

    config = load("both.yaml")
    logs = config["service"]["pipelines"]["logs"]
    assert logs["receivers"] == ["otlp"] and logs["exporters"] == ["otlphttp/loki"]
    assert logs["processors"] == ["memory_limiter", "transform/redact", "transform/event_name", "batch"]
    assert config["exporters"]["otlphttp/loki"]["endpoint"].endswith("loki:3100/otlp}")
    (group,) = config["processors"]["transform/event_name"]["log_statements"]
    assert group["context"] == "log"
    assert group["statements"] == ['set(attributes["event_name"], event_name) where event_name != ""']
    # the redaction rule removes secrets from the attributes custom events carry as log records
    regex = re.compile(redaction_patterns("both.yaml")["log"])
    assert regex.search(f"{conventions.EVENT_DATA}.api_key")
    assert not regex.search(f"{conventions.EVENT_DATA}.step")
    compose = load("docker-compose.yaml")["services"]
    assert compose["collector"]["environment"]["LOKI_OTLP_ENDPOINT"] == "http://loki:3100/otlp"
    assert "loki" in compose["collector"]["depends_on"]
    sources = {source["type"]: source for source in load("grafana-datasources.yaml")["datasources"]}
    (trace_link,) = sources["loki"]["jsonData"]["derivedFields"]
    assert trace_link["datasourceUid"] == sources["tempo"]["uid"] and trace_link["matcherRegex"] == "trace_id"
    assert trace_link["url"] == "$${__value.raw}"  # not expanded by Grafana's provisioning


def test_compose_mounts_existing_files_and_pins_images() -> None:
    compose = load("docker-compose.yaml")
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (CONFIGS / source).exists(), f"{name} mounts missing {source}"
    collector = compose["services"]["collector"]
    assert collector["image"].endswith(":" + KNOWN["version"])
    assert compose["services"]["jaeger"]["image"].endswith(":" + KNOWN["jaeger_v2"]["version"])
    ports = {
        port.split(":")[0] for service in compose["services"].values() for port in service.get("ports", [])
    }
    assert {"4317", "4318", "16686", "3200", "3000", "3100"} <= ports
