"""The LangChain integration through `opentelemetry-instrument`, no code change."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_runnables.integrations.langchain import is_instrumented
from otel_runnables.integrations.langchain.instrumentor import LangChainInstrumentor

APP = textwrap.dedent(
    """
    from langchain_core.callbacks.manager import dispatch_custom_event
    from langchain_core.runnables import RunnableLambda

    def work(x):
        dispatch_custom_event("progress", {"step": 1})
        return x + 1

    print("result", RunnableLambda(work, name="lc_work").invoke(1))
    """
)


def test_opentelemetry_instrument_traces_an_unchanged_langchain_app(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "lc-app",
        "OTEL_RUNNABLES_STORE": "off",
    }
    done = subprocess.run(
        [str(launcher), sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "result 2" in done.stdout
    assert '"name": "lc_work"' in done.stdout
    assert '"otel_runnables.run.type": "chain"' in done.stdout
    assert '"name": "progress"' in done.stdout


def test_instrumentor_round_trip() -> None:
    instrumentor = LangChainInstrumentor()
    assert list(instrumentor.instrumentation_dependencies()) == ["langchain-core >= 0.3"]
    instrumentor.instrument()
    try:
        assert is_instrumented()
    finally:
        instrumentor.uninstrument()
    assert not is_instrumented()


def test_skipped_when_its_dependency_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        LangChainInstrumentor, "instrumentation_dependencies", lambda self: ("langchain-core-absent >= 1",)
    )
    LangChainInstrumentor().instrument()
    assert not is_instrumented()
