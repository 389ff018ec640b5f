"""Processes are first-class: forked children and multiprocessing workers write
their runs, and the runs of a process that died are ``lost``, not running."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_runnables import progress
from otel_runnables._cli import EXIT_RUN_LOST
from otel_runnables._cli import main as cli
from otel_runnables._store import LocalStore
from tests.child_process import clean_environment, run_code
from tests.follow_helpers import wait_until
from tests.store_jobs import EVENTS_PER_RUN, RUNS_PER_TASK

ROOT = Path(__file__).resolve().parent.parent
POSIX = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")


def job(store: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_RUNNABLES_STORE": str(store),
        "OTEL_RUNNABLES_LIVENESS_SPANS": "false",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store_jobs", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a job that hangs goes with its children
    )


def finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[str, str]:
    """Its output once it exits; killed with its children (never left running) if it
    does not exit in time."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"the job did not finish in {timeout} s:\n{out}\n{err}") from None


def names_and_events(store: Path) -> dict[str, list[int]]:
    """Every stored root run by name: how many events each has. (Every one: how many
    runs a busy thread makes meanwhile depends on the machine.)"""
    found: dict[str, list[int]] = {}
    for record in LocalStore(store).recent_root_runs(sys.maxsize):
        assert record.end_ns is not None and record.status != "error", record
        found.setdefault(record.name, []).append(len(record.events))
    return found


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "traces.sqlite3"


@POSIX
@pytest.mark.parametrize(
    "method",
    # a fresh interpreter per worker takes seconds: spawn and forkserver run with the load tests
    [
        "fork",
        pytest.param("spawn", marks=pytest.mark.load),
        pytest.param("forkserver", marks=pytest.mark.load),
    ],
)
def test_multiprocessing_workers_write_their_runs_before_they_exit(store: Path, method: str) -> None:
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    done = job(store, "pools", method)
    out, err = finish(done)
    assert done.returncode == 0 and "done" in out, err
    found = names_and_events(store)
    full = [EVENTS_PER_RUN] * RUNS_PER_TASK
    assert found == {
        f"pool-{method}": full * 4,  # workers ended by Pool.terminate() (SIGTERM)
        f"pool-closed-{method}": full * 4,  # workers that returned (close, join)
        f"process-{method}": full,
        f"executor-{method}": full * 4,
    }


@POSIX
def test_children_forked_while_the_writer_is_busy_write_everything(store: Path) -> None:
    done = job(store, "forks", "12")
    out, err = finish(done)
    assert done.returncode == 0, err
    assert "children whose flush failed: 0" in out, err
    found = names_and_events(store)
    for index in range(12):
        assert found.pop(f"child-{index}") == [EVENTS_PER_RUN] * RUNS_PER_TASK
    assert set(found) == {"busy", "warm-up"}
    # nothing of the parent's was written again by a child: one end row per span
    connection = sqlite3.connect(store)
    ends, spans = connection.execute(
        "SELECT COUNT(*), COUNT(DISTINCT span_id) FROM spans WHERE end_ns IS NOT NULL"
    ).fetchone()
    connection.close()
    assert ends == spans


@pytest.fixture
def hanging(store: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A job whose run is going (one event stored); yields it and the run's id."""
    process = job(store, "hang", OTEL_RUNNABLES_STORE_HEARTBEAT="0.2s")
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "running"
        (summary,) = progress.runs(5, backend=progress.make_backend("local", path=str(store)))
        assert summary.status == "running"
        yield process, summary.run_id
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


@POSIX
def test_a_killed_job_is_lost_for_every_reader(
    store: Path, hanging: tuple[subprocess.Popen[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    process, run_id = hanging
    process.send_signal(signal.SIGKILL)
    process.wait()
    backend = progress.make_backend("local", path=str(store))
    (summary,) = progress.runs(5, backend=backend)
    assert summary.status == "lost"  # at once: on this machine its pid is gone
    (node,) = progress.get(run_id, backend=backend).roots
    assert (node.status, node.end_ns, len(node.events)) == ("lost", None, 1)
    assert node.status_message == "the process running it is gone"
    capsys.readouterr()
    assert cli(["runs", "--store", str(store)]) == 0
    assert "lost" in capsys.readouterr().out
    assert cli(["progress", run_id, "--store", str(store), "--json"]) == 0
    assert '"status": "lost"' in capsys.readouterr().out
    # --follow stops on it, with its own exit code
    assert cli(["progress", run_id, "--follow", "--store", str(store), "--wait", "5"]) == EXIT_RUN_LOST
    # the stored rows were not rewritten
    connection = sqlite3.connect(store)
    assert connection.execute("SELECT COUNT(*) FROM spans WHERE end_ns IS NOT NULL").fetchone()[0] == 0
    connection.close()


@POSIX
def test_a_follower_sees_the_job_die(store: Path, hanging: tuple[subprocess.Popen[str], str]) -> None:
    process, run_id = hanging
    follower = subprocess.Popen(
        [sys.executable, "-m", "otel_runnables._cli", "progress", run_id, "--follow", "--store", str(store)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the follower may start reading before or after the kill: it stops either way
        process.send_signal(signal.SIGKILL)
        process.wait()
        follower.communicate(timeout=120)
        assert follower.returncode == EXIT_RUN_LOST
    finally:
        if follower.poll() is None:
            follower.kill()


@POSIX
def test_a_writer_on_another_machine_is_lost_when_its_heartbeat_stops(
    store: Path, hanging: tuple[subprocess.Popen[str], str]
) -> None:
    process, run_id = hanging
    # as if it ran elsewhere: its pid means nothing here, only its heartbeat counts
    connection = sqlite3.connect(store, timeout=30)
    with connection:
        connection.execute("UPDATE writers SET host = 'elsewhere', process_start = NULL")
    connection.close()
    backend = progress.make_backend("local", path=str(store))

    def status() -> str:
        (node,) = progress.get(run_id, backend=backend).roots
        return node.status

    assert status() == "running"  # it beats every 0.2 s
    process.send_signal(signal.SIGSTOP)  # alive, but silent
    try:
        wait_until(lambda: status() == "lost", timeout=60)
    finally:
        process.send_signal(signal.SIGCONT)
    wait_until(lambda: status() == "running", timeout=60)  # beating again: nothing was rewritten


def test_the_library_threads_import_nothing(store: Path) -> None:
    """A thread of ours that imports a module for the first time holds that module's
    lock meanwhile; a process that forks then leaves its child the lock, held by a
    thread the child does not have, and the child's first use of that module waits
    forever (a forked child's store writer did, and lost its runs)."""
    done = run_code(
        """
        import sys, threading, time
        imports = []
        def heard(event, args):
            if event == "import" and threading.current_thread().name.startswith("otel_runnables"):
                imports.append((threading.current_thread().name, args[0]))
        sys.addaudithook(heard)
        import otel_runnables
        from otel_runnables import RunnableLambda, dispatch_custom_event
        otel_runnables.configure(exporters=["console"], set_global=False)
        def work(x):
            dispatch_custom_event("progress", {"step": 1, "total": 1})
            time.sleep(0.3)  # past the liveness delay: the liveness thread works too
            return x
        RunnableLambda(work).invoke(1)
        otel_runnables.shutdown()
        print("threads' imports:", imports, file=sys.stderr)
        """,
        clean_environment(OTEL_RUNNABLES_STORE=str(store), OTEL_RUNNABLES_LIVENESS_AFTER="0.05"),
    )
    assert "threads' imports: []" in done.stderr, done.stderr
