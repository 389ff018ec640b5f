"""The service examples: the decorated copy and the no-code launcher give the
plain service's results, and the same run tree."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from otel_runnables.testing import CapturedRuns, capture_runs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED_TREE = "\n".join(
    ["process_order", "  OrderService.quote", "  OrderService.charge", "  OrderService.ship"] * 2
    + ["process_order", "  OrderService.quote", "  OrderService.charge"]
)


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield
    for name in ("service_plain", "service_decorated", "service_nocode", "_shop", "_print_spans"):
        sys.modules.pop(name, None)


def fresh(name: str) -> ModuleType:
    sys.modules.pop(name, None)
    return importlib.import_module(name)


ADDRESS = re.compile(r"at 0x[0-9a-fA-F]+")


def check_traces(captured: CapturedRuns) -> None:
    assert captured.tree() == EXPECTED_TREE
    # the service object is shown by its type and fields, never by an address
    process = captured.runs_named("process_order")[0]
    assert json.loads(process.attributes["input.value"])["service"]["__type__"] == "OrderService"
    for run in captured.runs:
        for value in run.attributes.values():
            assert not ADDRESS.search(str(value)), (run.name, value)
    rejected = captured.runs_named("OrderService.charge")[-1]
    assert rejected.error == "ValueError: 108 is over the credit limit"
    assert rejected.run_type == "tool" and rejected.inputs["amount"] == 108
    assert captured.live_runs == []


def test_the_plain_service_is_untraced(examples: None) -> None:
    plain = fresh("service_plain")
    with capture_runs() as captured:
        plain.run_service(plain.ORDERS)
    assert captured.runs == []


def test_the_decorated_service(examples: None) -> None:
    plain, decorated = fresh("service_plain"), fresh("service_decorated")
    with capture_runs() as captured:
        results = decorated.run_service(decorated.ORDERS)
    assert results == plain.run_service(plain.ORDERS)
    check_traces(captured)


def test_the_same_service_with_no_code_change(examples: None) -> None:
    plain = fresh("service_plain")
    expected = plain.run_service(plain.ORDERS)
    sys.modules.pop("service_plain")
    launcher = fresh("service_nocode")
    launcher.instrument_service()
    try:
        service = importlib.import_module("service_plain")  # patched as it is imported
        with capture_runs() as captured:
            assert service.run_service(service.ORDERS) == expected
    finally:
        launcher.uninstrument_service()
    check_traces(captured)


def test_the_documented_opentelemetry_instrument_command() -> None:
    launcher = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    if launcher is None:
        pytest.skip("opentelemetry-instrumentation is not installed (extra 'instrument')")
    env = {
        **os.environ,
        "OTEL_RUNNABLES_INSTRUMENT_TARGETS": "service_plain:OrderService=tool,service_plain:process_order",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    command = [launcher, sys.executable, "-c", "import service_plain; service_plain.main()"]
    done = subprocess.run(command, cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "order 3 rejected" in done.stdout
    assert not ADDRESS.search(done.stdout)  # the console exporter's JSON of every span
    for name in ("process_order", "OrderService.quote", "OrderService.charge", "OrderService.ship"):
        assert f'"name": "{name}"' in done.stdout


# every example a user runs; not the modules they share (``_shop.py``, ``_print_spans.py``)
@pytest.mark.parametrize("script", sorted(path.name for path in EXAMPLES.glob("[!_]*.py")))
def test_no_example_records_a_memory_address(script: str, tmp_path: Path) -> None:
    """What every example writes (its printed spans and the store's file) shows
    objects by their type and fields, never by an address that changes every run."""
    env = {
        **os.environ,
        "OTEL_RUNNABLES_STORE": str(tmp_path / "traces.sqlite3"),
        "OTEL_RUNNABLES_LIVENESS_AFTER": "0",  # pending spans copy the inputs too
        "OTEL_RUNNABLES_LIVENESS_SPANS": "true",
    }
    done = subprocess.run(
        [sys.executable, script], cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    written = done.stdout + "".join(
        path.read_bytes().decode("utf-8", "replace") for path in tmp_path.iterdir() if path.is_file()
    )
    assert not ADDRESS.search(written), ADDRESS.search(written)
