"""`instrument` / `uninstrument` by name, before or after the target's import,
and through `opentelemetry-instrument` with the registered entry point."""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from otel_runnables import InstrumentationError, Runnable, instrument, uninstrument
from otel_runnables._instrumentation import instrumented_targets
from otel_runnables.testing import capture_runs

SERVICE = '''
"""A module that knows nothing about tracing."""

CONSTANT = 3


def work(n, *, scale=2):
    return helper(n) * scale


def helper(n):
    return n + 1


class Base:
    def inherited(self, x):
        return x


class Service(Base):
    def __init__(self, name="svc"):
        self.name = name

    def handle(self, request):
        return f"{self.name}:{request}"

    @classmethod
    def create(cls, name):
        return cls(name)

    @staticmethod
    def version():
        return "1.0"

    def _private(self):
        return "private"
'''

_names = itertools.count()

WriteModule = Callable[[str], str]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Writes a fresh, not yet imported module; returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(source: str) -> str:
        name = f"untraced_service_{next(_names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        written.append(name)
        return name

    yield write
    for target in instrumented_targets():
        if target.split(":")[0] in written:
            uninstrument(target)
    for name in written:
        sys.modules.pop(name, None)


def test_instrument_an_imported_function_and_undo_it(write_module: WriteModule) -> None:
    name = write_module(SERVICE)
    module = importlib.import_module(name)
    original = module.work
    instrument(f"{name}:work", run_type="tool", tags=["batch"])
    assert isinstance(module.work, Runnable)
    from_import = importlib.import_module(name).work
    with capture_runs() as captured:
        assert from_import(1) == 4
    run = captured.run("work")
    assert (run.run_type, run.tags, run.inputs) == ("tool", ["batch"], {"n": 1, "scale": 2})
    uninstrument(f"{name}:work")
    assert module.work is original
    with capture_runs() as captured:
        module.work(1)
    assert captured.runs == []


def test_instrument_a_method_a_classmethod_and_a_staticmethod(write_module: WriteModule) -> None:
    name = write_module(SERVICE)
    module = importlib.import_module(name)
    originals = dict(vars(module.Service))
    targets = [f"{name}:Service.handle", f"{name}:Service.create", f"{name}:Service.version"]
    for target in targets:
        instrument(target)
    with capture_runs() as captured:
        service = module.Service.create("a")
        assert service.handle("ping") == "a:ping"
        assert module.Service.version() == "1.0"
    assert [(run.name, run.inputs) for run in captured.runs] == [
        ("Service.create", {"name": "a"}),
        ("Service.handle", {"request": "ping"}),
        ("Service.version", {}),
    ]
    for target in targets:
        uninstrument(target)
    assert dict(vars(module.Service)) == originals


def test_instrument_a_whole_class(write_module: WriteModule) -> None:
    name = write_module(SERVICE)
    module = importlib.import_module(name)
    originals = dict(vars(module.Service))
    instrument(f"{name}:Service", metadata={"team": "web"})
    with capture_runs() as captured:
        service = module.Service()
        service.handle("x")
        service._private()
        service.inherited(1)  # defined on Base: not this class's own method
    assert [run.name for run in captured.runs] == ["Service.handle"]
    assert captured.run("Service.handle").metadata == {"team": "web"}
    uninstrument(f"{name}:Service")
    assert dict(vars(module.Service)) == originals


def test_an_inherited_method_is_patched_on_the_subclass_and_removed_again(write_module: WriteModule) -> None:
    name = write_module(SERVICE)
    module = importlib.import_module(name)
    instrument(f"{name}:Service.inherited")
    with capture_runs() as captured:
        module.Service().inherited(2)
        module.Base().inherited(3)  # the base class itself is untouched
    assert [run.inputs for run in captured.runs] == [{"x": 2}]
    uninstrument(f"{name}:Service.inherited")
    assert "inherited" not in vars(module.Service)


def test_instrument_before_the_module_is_imported(write_module: WriteModule) -> None:
    name = write_module(SERVICE)
    instrument(f"{name}:work")
    instrument(f"{name}:Service.handle")
    assert name not in sys.modules  # instrument did not import it
    assert instrumented_targets()[-2:] == [f"{name}:work", f"{name}:Service.handle"]
    module = importlib.import_module(name)
    with capture_runs() as captured:
        module.work(1)
        module.Service().handle("r")
    assert [run.name for run in captured.runs] == ["work", "Service.handle"]


def test_uninstrument_before_the_import_cancels_the_patch(write_module: WriteModule) -> None:
    name = write_module(SERVICE)
    instrument(f"{name}:work")
    uninstrument(f"{name}:work")
    module = importlib.import_module(name)
    assert not isinstance(module.work, Runnable)


def test_a_bad_target_found_on_import_is_logged_and_the_import_works(
    write_module: WriteModule, caplog: pytest.LogCaptureFixture
) -> None:
    name = write_module(SERVICE)
    instrument(f"{name}:no_such_function")
    with caplog.at_level(logging.WARNING, logger="otel_runnables._instrumentation"):
        module = importlib.import_module(name)
    assert module.work(1) == 4
    assert f"cannot instrument '{name}:no_such_function'" in caplog.text


@pytest.mark.parametrize("target", ["no_colon", "a:b:c", "a.:b", ":f", "mod:", "1mod:f", "mod:f()"])
def test_malformed_targets_are_typed_errors(target: str) -> None:
    with pytest.raises(InstrumentationError, match=re.escape("must look like 'package.module:Class.method'")):
        instrument(target)


def test_target_errors_name_the_target(write_module: WriteModule) -> None:
    missing_module = re.escape("cannot instrument 'no.such:target': no module")
    with pytest.raises(InstrumentationError, match=missing_module):
        instrument("no.such:target")
    with pytest.raises(InstrumentationError, match="must be a str, got int"):
        instrument(5)  # type: ignore[arg-type]
    name = write_module(SERVICE)
    importlib.import_module(name)
    with pytest.raises(InstrumentationError, match=f"'{name}:missing': 'missing' not found"):
        instrument(f"{name}:missing")
    with pytest.raises(InstrumentationError, match="traceable expects a function, method or class, got int"):
        instrument(f"{name}:CONSTANT")
    with pytest.raises(InstrumentationError, match=f"'{name}:work' is not instrumented"):
        uninstrument(f"{name}:work")
    instrument(f"{name}:work")
    with pytest.raises(InstrumentationError, match="is already instrumented; uninstrument it first"):
        instrument(f"{name}:work")
    assert issubclass(InstrumentationError, LookupError)


def test_instrument_a_generator_with_reduce(write_module: WriteModule) -> None:
    name = write_module("def rows(n):\n    yield from range(n)\n\ndef total(n):\n    return n\n")
    module = importlib.import_module(name)
    instrument(f"{name}:rows", reduce=sum)
    with capture_runs() as captured:
        assert list(module.rows(4)) == [0, 1, 2, 3]
        assert module.rows.invoke(4) == 6
    assert [run.outputs for run in captured.runs_named("rows")] == [6, 6]
    with pytest.raises(InstrumentationError, match="reduce applies to generators only"):
        instrument(f"{name}:total", reduce=sum)


def test_a_function_traced_in_code_is_not_traced_twice(write_module: WriteModule) -> None:
    name = write_module("from otel_runnables import traceable\n\n@traceable\ndef done():\n    return 1\n")
    importlib.import_module(name)
    with pytest.raises(InstrumentationError, match="it is traced already"):
        instrument(f"{name}:done")


# -- the OpenTelemetry instrumentor -------------------------------------------------------


def test_the_instrumentor_is_registered_as_an_entry_point() -> None:
    from otel_runnables._instrumentation.instrumentor import OtelRunnablesInstrumentor

    (entry,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "otel_runnables"]
    assert entry.load() is OtelRunnablesInstrumentor


def test_the_instrumentor_applies_and_undoes_targets(
    write_module: WriteModule, setenv: Callable[[str, str], None], caplog: pytest.LogCaptureFixture
) -> None:
    from otel_runnables._instrumentation.instrumentor import (
        TARGETS_ENV,
        OtelRunnablesInstrumentor,
        parse_targets,
    )

    assert TARGETS_ENV == "OTEL_RUNNABLES_INSTRUMENT_TARGETS"
    assert parse_targets(" a.b:f , a.c:Cls=tool,,") == [("a.b:f", "chain"), ("a.c:Cls", "tool")]
    name = write_module(SERVICE)
    setenv(TARGETS_ENV, f"{name}:work=tool, {name}:Service, no.such:thing")
    instrumentor = OtelRunnablesInstrumentor()
    with caplog.at_level(logging.WARNING, logger="otel_runnables._instrumentation"):
        instrumentor.instrument()
    assert "no module named 'no.such'" in caplog.text  # logged, not raised
    try:
        module = importlib.import_module(name)
        with capture_runs() as captured:
            module.work(1)
            module.Service().handle("r")
        assert [(run.name, run.run_type) for run in captured.runs] == [
            ("work", "tool"),
            ("Service.handle", "chain"),
        ]
    finally:
        OtelRunnablesInstrumentor().uninstrument()  # the singleton: the same instance
    assert not isinstance(module.work, Runnable)
    assert f"{name}:work" not in instrumented_targets()


CHILD_SCRIPT = """
import json, sys
from otel_runnables.testing import capture_runs

assert "{module}" not in sys.modules, "imported before the application asked for it"
with capture_runs() as captured:
    import {module} as service
    service.work(1)
    service.Service().handle("req")
print(json.dumps([[run.name, run.run_type, run.inputs] for run in captured.runs]))
"""


def test_opentelemetry_instrument_applies_the_targets_of_the_environment(
    write_module: WriteModule, tmp_path: Path
) -> None:
    launcher = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    if launcher is None:
        pytest.skip("opentelemetry-instrumentation is not installed (extra 'instrument')")
    name = write_module(SERVICE)
    script = tmp_path / "app.py"
    script.write_text(CHILD_SCRIPT.format(module=name))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()]),
        "OTEL_RUNNABLES_INSTRUMENT_TARGETS": f"{name}:work=tool,{name}:Service",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    done = subprocess.run(
        [launcher, sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    runs: list[Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs == [
        ["work", "tool", {"n": 1, "scale": 2}],
        ["Service.handle", "chain", {"request": "req"}],
    ]
