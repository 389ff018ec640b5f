"""The store's file is the user's: private modes, never another database, and
every unusable store said in one line by the CLI; trees of any depth."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_runnables import RunnableLambda, dispatch_custom_event, progress, web
from otel_runnables._cli import EXIT_BACKEND, EXIT_NOT_FOUND
from otel_runnables._cli import main as cli
from otel_runnables._store import LocalStore, LocalStoreSpanProcessor
from otel_runnables._store.schema import connect_writer
from otel_runnables.progress.render import TEXT_DEPTH
from tests.asgi import asgi_request

ROOT = Path(__file__).resolve().parent.parent
POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def work(x: int) -> int:
    dispatch_custom_event("progress", {"step": 1, "total": 1})
    return x


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@POSIX
def test_the_store_and_its_directories_are_private(
    tmp_path: Path, store_at: Callable[[Path], LocalStoreSpanProcessor]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    path = home / "data" / "otel_runnables" / "traces.sqlite3"
    before = os.umask(0o022)  # the usual umask would leave them readable by everyone
    try:
        store = store_at(path)
        RunnableLambda(work).invoke(1)
        assert store.force_flush()
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        assert all(file.exists() for file in files)  # the writer's connection is open
        assert [mode(file) for file in files] == [0o600] * 3
        assert mode(path.parent) == mode(path.parent.parent) == 0o700
        assert mode(home) == 0o755  # a directory that was there is left as it was
    finally:
        os.umask(before)


def a_foreign_database(path: Path) -> bytes:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    connection.executemany("INSERT INTO orders (total) VALUES (?)", [(9.5,), (12.0,)])
    connection.commit()
    connection.close()
    return path.read_bytes()


def test_a_foreign_database_is_never_touched(
    tmp_path: Path,
    store_at: Callable[[Path], LocalStoreSpanProcessor],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = tmp_path / "app.db"
    original = a_foreign_database(app)
    with caplog.at_level(logging.WARNING, logger="otel_runnables"):
        store = store_at(app)
        assert [RunnableLambda(work).invoke(i) for i in range(3)] == [0, 1, 2]  # the user's code goes on
        assert store.force_flush() is False  # nothing was written, and the flush says so
        store.shutdown()
    assert app.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no -wal, no -shm
    refusals = [r.getMessage() for r in caplog.records if "not an otel_runnables store" in r.getMessage()]
    assert len(refusals) == 1 and str(app) in refusals[0] and "orders" in refusals[0]
    assert store.counts().lost == 3 * 3  # counted, never silently gone
    # the CLI says the same, in one line, and exits 3
    capsys.readouterr()
    assert cli(["runs", "--store", str(app)]) == EXIT_BACKEND
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "not an otel_runnables store" in err
    assert app.read_bytes() == original


def a_store_with_runs(path: Path, runs: int = 3) -> None:
    provider = TracerProvider()
    processor = LocalStoreSpanProcessor(path)
    provider.add_span_processor(processor)
    job = RunnableLambda(work)
    from otel_runnables import _telemetry as telemetry

    previous = telemetry.swap_tracer(provider.get_tracer("otel_runnables"))
    try:
        for i in range(runs):
            job.invoke(i)
    finally:
        telemetry.swap_tracer(previous)
        processor.shutdown()


def bad_stores(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each unusable shape: the file, and what the one line must say."""
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 50)
    newer = tmp_path / "newer.sqlite3"
    connect_writer(newer).close()
    with sqlite3.connect(newer) as connection:
        connection.execute("PRAGMA user_version = 99")
    directory = tmp_path / "a-directory"
    directory.mkdir()
    truncated = tmp_path / "truncated.sqlite3"
    a_store_with_runs(truncated, 200)
    truncated.write_bytes(truncated.read_bytes()[:6000])
    garbage = tmp_path / "garbage.sqlite3"
    a_store_with_runs(garbage, 200)
    data = bytearray(garbage.read_bytes())
    page = 4096
    data[page : len(data)] = bytes(
        (i * 7 + 3) % 256 for i in range(len(data) - page)
    )  # every page but the first
    garbage.write_bytes(bytes(data))
    foreign = tmp_path / "app.db"
    a_foreign_database(foreign)
    return {
        "not sqlite": (text, "is not an SQLite database"),
        "newer schema": (newer, "has store schema 99"),
        "a directory": (directory, "is a directory"),
        "truncated": (truncated, str(truncated)),
        "garbage pages": (garbage, str(garbage)),
        "foreign": (foreign, "not an otel_runnables store"),
    }


def test_every_unusable_store_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for shape, (path, says) in bad_stores(tmp_path).items():
        for command in (["runs"], ["progress", "0" * 31 + "1"], ["events", "0" * 31 + "1"]):
            capsys.readouterr()
            code = cli([*command, "--store", str(path)])
            out, err = capsys.readouterr()
            assert code == EXIT_BACKEND, (shape, command, out, err)
            assert err.count("\n") == 1 and says in err and str(path) in err, (shape, command, err)
            assert "Traceback" not in out + err


def test_a_missing_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.sqlite3"
    for command in (["runs"], ["progress", "0" * 31 + "1"], ["events", "0" * 31 + "1"]):
        capsys.readouterr()
        assert cli([*command, "--store", str(missing)]) == EXIT_NOT_FOUND
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1
        assert f"there is no store file {missing}" in err
    assert not missing.exists()


def test_the_demo_refuses_an_unusable_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    assert cli(["demo", "--store", str(directory), "--steps", "1", "--delay", "0"]) == EXIT_BACKEND
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{directory} is a directory" in err


def test_output_to_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite3"
    a_store_with_runs(path, 600)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in (["runs", "--last", "600", "--json"], ["runs", "--last", "600"]):
        reader = subprocess.Popen(
            [sys.executable, "-m", "otel_runnables._cli", *command, "--store", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        assert reader.stdout is not None and reader.stderr is not None
        reader.stdout.readline()  # `| head -1`
        reader.stdout.close()
        err = reader.stderr.read().decode()
        assert reader.wait(timeout=120) == 0
        assert err == ""


# -- trees of any depth --------------------------------------------------------------------------

DEPTH = 1_000


def a_deep_trace(path: Path) -> tuple[str, list[str]]:
    """A trace of runs nested ``DEPTH`` levels deep, written as a writer would."""
    connection = connect_writer(path)
    trace_id = "d" * 32
    run_ids = [f"00000000-0000-7000-8000-{level:012d}" for level in range(DEPTH)]
    rows = []
    for level, run_id in enumerate(run_ids):
        parent = run_ids[level - 1] if level else None
        attributes = {"otel_runnables.span_type": "run", "otel_runnables.run.id": run_id}
        if parent is not None:
            attributes["otel_runnables.run.parent_id"] = parent
        rows.append(
            (
                trace_id,
                f"{level + 1:016x}",
                f"{level:016x}" if level else None,
                f"level {level}",
                "run",
                run_id,
                parent,
                "chain",
                1_000 + level,
                10_000 - level,
                "ok",
                json.dumps(attributes),
            )
        )
    connection.executemany(
        "INSERT INTO spans (trace_id, span_id, parent_span_id, name, span_type, run_id, parent_run_id, "
        "run_type, start_ns, end_ns, status, attributes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    connection.close()
    return trace_id, run_ids


def test_a_thousand_levels_are_built_found_and_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "traces.sqlite3"
    trace_id, run_ids = a_deep_trace(path)
    backend = progress.make_backend("local", path=str(path))
    (root,) = progress.get(trace_id, backend=backend).roots
    depth, node = 1, root
    while node.children:
        (node,) = node.children
        depth += 1
    assert depth == DEPTH and node.run_id == run_ids[-1]
    (deepest,) = progress.get(run_ids[-1], backend=backend).roots  # found, not "not in trace"
    assert deepest.name == f"level {DEPTH - 1}"
    assert cli(["progress", run_ids[-1], "--store", str(path)]) == 0
    capsys.readouterr()
    assert cli(["progress", trace_id, "--store", str(path)]) == 0
    shown = capsys.readouterr().out
    assert f"level {TEXT_DEPTH - 1}" in shown and f"level {TEXT_DEPTH} " not in shown
    assert f"… {DEPTH - TEXT_DEPTH:,} more runs below (--json shows all)" in shown
    assert cli(["progress", trace_id, "--store", str(path), "--json"]) == 0
    assert levels_of(deep_loads(capsys.readouterr().out)) == DEPTH
    assert LocalStore(path).counts() == (DEPTH, 0)

    # the web API's tree, as a mounting app serves it
    start, body = asgi_request(web.create_app(path=str(path)), f"/api/runs/{trace_id}")
    assert start["status"] == 200
    assert levels_of(deep_loads(body["body"].decode())) == DEPTH

    # following the ended trace as JSON Lines, in a process of its own as a user runs it
    followed = subprocess.run(
        [sys.executable, "-m", "otel_runnables._cli", "progress", trace_id, "--follow", "--json"]
        + ["--store", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert followed.stderr == "" and followed.returncode == 0
    lines = followed.stdout.splitlines()
    assert lines and all(levels_of(deep_loads(line)) == DEPTH for line in lines)


def deep_loads(text: str) -> Any:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10 * DEPTH)  # json.loads recurses as deep as the document
    try:
        return json.loads(text)
    finally:
        sys.setrecursionlimit(limit)


def levels_of(document: dict[str, Any]) -> int:
    levels, node = 1, document["runs"][0]
    while node["children"]:
        (node,) = node["children"]
        levels += 1
    return levels
