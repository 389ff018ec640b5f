"""No-code tracing of the usual ways to run a program, end to end in a
subprocess under ``opentelemetry-instrument``: ``python -m pkg.mod`` and
``python path/to/mod.py`` (the module runs as ``__main__``) and a module
imported by the program. Where a target cannot be patched, one warning names
it and the fix; a target never resolved is reported once, at exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_runnables import progress

PIPELINE = '''
"""A job that knows nothing about tracing."""

def load(n):
    return list(range(n))


def run_job(n=3):
    return sum(load(n))


if __name__ == "__main__":
    print("result", run_job())
'''

IMPORTER = """
from etlapp.pipeline import run_job
print("result", run_job())
"""

CAN_PATCH_MAIN = sys.version_info >= (3, 12)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    package = tmp_path / "etlapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    (tmp_path / "main.py").write_text(textwrap.dedent(IMPORTER))
    return tmp_path


def launch(app: Path, targets: str, *command: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    launcher = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    if launcher is None:
        pytest.skip("opentelemetry-instrumentation is not installed (extra 'instrument')")
    store = app / "traces.sqlite3"
    # the README's environment for opentelemetry-instrument, with the store as the backend
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(app), os.getcwd()]),
        "OTEL_RUNNABLES_INSTRUMENT_TARGETS": targets,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_RUNNABLES_STORE": str(store),
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "langchain_otel_runnables",  # start-up time only
    }
    done = subprocess.run(
        [launcher, sys.executable, *command], cwd=app, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "result 3" in done.stdout
    return done, store


def run_names(store: Path) -> list[str]:
    if not store.exists():
        return []
    return sorted(summary.name for summary in progress.runs(path=str(store)))


@pytest.mark.parametrize(
    "command",
    [("-m", "etlapp.pipeline"), ("etlapp/pipeline.py",)],
    ids=["python -m pkg.mod", "python path/to/script.py"],
)
def test_a_target_in_the_module_run_as_main(app: Path, command: tuple[str, ...]) -> None:
    done, store = launch(app, "etlapp.pipeline:run_job", *command)
    if CAN_PATCH_MAIN:
        assert run_names(store) == ["run_job"]
        assert "instrumented nothing" not in done.stderr
    else:
        assert run_names(store) == []
        (warning,) = [line for line in done.stderr.splitlines() if "etlapp.pipeline:run_job" in line]
        assert "runs as __main__" in warning and "Python 3.12+" in warning
        assert 'python -c "import etlapp.pipeline as m; m.run_job()"' in warning


def test_the_main_module_named_as_main(app: Path) -> None:
    done, store = launch(app, "__main__:run_job", "etlapp/pipeline.py")
    if CAN_PATCH_MAIN:
        assert run_names(store) == ["run_job"]
    else:
        assert "'__main__:run_job'" in done.stderr and "runs as __main__" in done.stderr


def test_a_target_in_an_imported_module(app: Path) -> None:
    done, store = launch(app, "etlapp.pipeline:run_job", "main.py")
    assert run_names(store) == ["run_job"]
    assert "instrumented nothing" not in done.stderr


def test_a_target_never_resolved_is_reported_once_at_exit(app: Path) -> None:
    (app / "etlapp" / "unused.py").write_text("def job():\n    return 1\n")
    done, _ = launch(app, "etlapp.unused:job,etlapp.pipeline:missing", "-m", "etlapp.pipeline")
    unused = [line for line in done.stderr.splitlines() if "'etlapp.unused:job'" in line]
    assert len(unused) == 1 and "module 'etlapp.unused' was never imported" in unused[0]
    missing = [line for line in done.stderr.splitlines() if "'etlapp.pipeline:missing'" in line]
    assert len(missing) == 1
    if CAN_PATCH_MAIN:
        assert "'missing' was never defined in __main__" in missing[0]
