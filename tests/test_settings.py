"""The one table of ``OTEL_RUNNABLES_*`` settings: parsing, bad values, and the README."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import otel_runnables
from otel_runnables import _dispatch, _settings, callbacks
from otel_runnables import _liveness as liveness
from otel_runnables._errors import ConfigurationError
from otel_runnables._serialization import capture_content_enabled
from otel_runnables._store import RetentionPolicy, default_store_path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "otel_runnables"


@pytest.fixture(autouse=True)
def settings_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sets variables through ``monkeypatch``; afterwards the table is read again."""
    for setting in _settings.SETTINGS:
        if setting.name != "OTEL_RUNNABLES_STORE":
            monkeypatch.delenv(setting.name, raising=False)
    yield
    monkeypatch.undo()
    _settings.refresh()


def read(**variables: str) -> None:
    _settings.refresh(environ={f"OTEL_RUNNABLES_{name}": value for name, value in variables.items()})


def test_every_boolean_takes_the_same_words() -> None:
    booleans = [s for s in _settings.SETTINGS if s.kind is _settings.BOOLEAN]
    assert len(booleans) >= 2
    for word in ("true", "1", "YES", " on ", "True\n"):
        for setting in booleans:
            assert setting.read({setting.name: word}) is True, (setting.name, word)
    for word in ("false", "0", " No ", "OFF", "none", "None"):
        for setting in booleans:
            assert setting.read({setting.name: word}) is False, (setting.name, word)


def test_off_words_turn_off_capture_liveness_store_and_timeout_alike() -> None:
    for word in sorted(_settings.OFF_WORDS):
        read(CAPTURE_CONTENT=word, LIVENESS_SPANS=word, STORE=word, HANDLER_TIMEOUT=word)
        assert capture_content_enabled() is False
        assert _settings.LIVENESS_SPANS.value is False
        assert default_store_path() is None
        assert _dispatch.handler_timeout(callbacks.BaseCallbackHandler()) is None


def test_durations_sizes_paths_and_key_lists() -> None:
    duration = _settings.DURATION.parse
    assert [duration(t) for t in ("90", "2.5", "500ms", "2h", "7d", "1.5m", ".5s")] == [
        90,
        2.5,
        0.5,
        7200,
        7 * 86400,
        90,
        0.5,
    ]
    size = _settings.SIZE.parse
    assert [size(t) for t in ("200MB", "1 GiB", "512", "2kb", "3B")] == [200_000_000, 1024**3, 512, 2000, 3]
    read(STORE="~/x.sqlite3", STORE_MAX_AGE="1h", STORE_MAX_BYTES="5MB", HANDLER_TIMEOUT="250ms")
    assert default_store_path() == Path.home() / "x.sqlite3"
    assert RetentionPolicy.from_settings() == RetentionPolicy(max_age=3600, max_bytes=5_000_000)
    assert _dispatch.handler_timeout(callbacks.BaseCallbackHandler()) == 0.25
    read(REDACT_KEYS="ssn, Pin")
    assert _settings.REDACT_KEYS.value == ("ssn", "Pin")
    read(REDACT_KEYS="+ssn")
    assert _settings.REDACT_KEYS.value == (*_settings.DEFAULT_REDACT_KEYS, "ssn")


def test_unset_and_empty_mean_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    read(CAPTURE_CONTENT="", LIVENESS_AFTER="  ")
    for setting in _settings.SETTINGS:
        assert setting.value == setting.default, setting.name
    assert RetentionPolicy.from_settings() == RetentionPolicy()
    monkeypatch.delenv("OTEL_RUNNABLES_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    _settings.refresh()
    assert default_store_path() == tmp_path / "otel_runnables" / "traces.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    _settings.refresh()
    assert default_store_path() == Path.home() / ".local" / "share" / "otel_runnables" / "traces.sqlite3"


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("CAPTURE_CONTENT", "maybe"),
        ("LIVENESS_AFTER", "soon"),
        ("LIVENESS_AFTER", "-1"),
        ("HANDLER_TIMEOUT", "10 minutes"),
        ("STORE_MAX_AGE", "a week"),
        ("STORE_MAX_BYTES", "5 TB"),
    ],
)
def test_a_bad_value_is_one_log_line_naming_it_and_the_default_is_used(
    name: str, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    setting = next(s for s in _settings.SETTINGS if s.name == f"OTEL_RUNNABLES_{name}")
    caplog.set_level(logging.WARNING, logger="otel_runnables")
    read(**{name: raw, "LIVENESS_SPANS": "off"})
    assert setting.value == setting.default
    assert _settings.LIVENESS_SPANS.value is False  # the good ones are still read
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("otel_runnables")]
    assert len(lines) == 1, lines
    assert setting.name in lines[0] and repr(raw) in lines[0] and "using the default" in lines[0]


def test_configure_raises_on_a_bad_value_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RUNNABLES_LIVENESS_AFTER", "soon")
    monkeypatch.setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "off")
    expected = r"OTEL_RUNNABLES_LIVENESS_AFTER='soon' is not valid: expected seconds"
    with pytest.raises(ConfigurationError, match=expected):
        otel_runnables.configure(exporters=["none"], store=False)
    assert capture_content_enabled() is True  # not half-applied


def test_configure_reads_the_variables_again(monkeypatch: pytest.MonkeyPatch) -> None:
    before = liveness.liveness_delay()
    pinned = otel_runnables._telemetry.swap_tracer(None)
    monkeypatch.setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "no")
    monkeypatch.setenv("OTEL_RUNNABLES_LIVENESS_AFTER", "250ms")
    try:
        assert capture_content_enabled() is True  # read once: not yet
        otel_runnables.configure(exporters=["none"], store=False, set_global=False)
        assert capture_content_enabled() is False
        assert liveness.liveness_delay() == 0.25
        otel_runnables.shutdown()
        otel_runnables.configure(exporters=["none"], store=False, set_global=False, liveness_spans=False)
        assert liveness.liveness_delay() is None  # the argument wins
    finally:
        otel_runnables.shutdown()
        otel_runnables._telemetry.swap_tracer(pinned)
        liveness.configure_liveness(before is not None, before)


def test_a_bad_variable_at_import_never_breaks_the_program() -> None:
    script = "import otel_runnables; print(otel_runnables._settings.LIVENESS_AFTER.value)"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OTEL_RUNNABLES_LIVENESS_AFTER": "soon"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.0"
    assert done.stderr.count("OTEL_RUNNABLES_LIVENESS_AFTER='soon'") == 1, done.stderr


def test_the_readme_lists_exactly_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- settings table:.*?-->\n(.*?)\n<!-- end of settings table -->", readme, re.S)
    assert found is not None, "README.md lost its settings table markers"
    expected = _settings.markdown_table()
    assert found.group(1) == expected, f"README.md's settings table is stale; it should read:\n{expected}"


def test_no_module_reads_the_library_variables_itself() -> None:
    named = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name != "_settings.py":
            assert not re.search(r"environ(?:\.get)?\(?\[?\s*['\"]OTEL_RUNNABLES_", text), path
        named.update(re.findall(r"OTEL_RUNNABLES_[A-Z_]*[A-Z](?![A-Z_]*\*)", text))
    defined = {s.name for s in _settings.SETTINGS}
    assert named <= defined, f"variables named in the code but missing from the table: {named - defined}"
