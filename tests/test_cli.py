"""The ``otel-runnables`` command, driven as a user would: in subprocesses, on a
store written by other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def environment(store: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(OTEL_RUNNABLES_STORE=str(store), PYTHONPATH=str(ROOT), NO_COLOR="1")
    return env


def cli(store: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_runnables.cli", *args],
        capture_output=True,
        text=True,
        env=environment(store),
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("cli") / "traces.sqlite3"
    done = cli(store, "demo", "--steps", "3", "--delay", "0.05")
    assert done.returncode == 0, done.stderr
    assert str(store) in done.stdout and "otel-runnables progress" in done.stdout
    return store


def test_runs_lists_the_demo(demo_store: Path) -> None:
    done = cli(demo_store, "runs", "--json")
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)
    assert run["name"] == "nightly_etl" and run["status"] == "ok"
    assert len(run["trace_id"]) == 32 and run["duration_ms"] > 0
    table = cli(demo_store, "runs")
    assert run["run_id"] in table.stdout and run["trace_id"] in table.stdout


def test_progress_by_run_id_and_by_trace_id(demo_store: Path) -> None:
    (run,) = json.loads(cli(demo_store, "runs", "--json").stdout)
    done = cli(demo_store, "progress", run["run_id"], "--json")
    assert done.returncode == 0, done.stderr
    tree = json.loads(done.stdout)
    (root,) = tree["runs"]
    assert [child["name"] for child in root["children"]] == ["fetch", "transform", "load"]
    transform = root["children"][1]
    assert transform["progress"]["done"] == 3 and transform["progress"]["percent"] == 100
    assert transform["progress"]["message"] == "chunk 3 of 3"
    assert root["tags"] == ["demo", "etl"] and root["metadata"] == {"team": "data"}
    by_trace = json.loads(cli(demo_store, "progress", run["trace_id"], "--json").stdout)
    assert by_trace["runs"][0]["run_id"] == run["run_id"]
    text = cli(demo_store, "progress", run["run_id"]).stdout
    assert "✓ nightly_etl" in text and "chunk 3 of 3" in text


def test_events_as_lines_and_json_lines(demo_store: Path) -> None:
    (run,) = json.loads(cli(demo_store, "runs", "--json").stdout)
    tree = json.loads(cli(demo_store, "progress", run["run_id"], "--json").stdout)
    transform_id = tree["runs"][0]["children"][1]["run_id"]
    done = cli(demo_store, "events", transform_id, "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [event["data"]["step"] for event in events] == [1, 2, 3]
    assert "chunk 2 of 3" in cli(demo_store, "events", transform_id).stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["progress", "not-an-id"], 2, "neither a trace id"),
        (["progress", "0" * 31 + "1"], 4, "no trace"),
        (["events", "0123"], 2, "not a run id"),
        (["runs", "--backend", "jaeger", "--url", "http://127.0.0.1:1"], 3, "http://127.0.0.1:1"),
        (["runs", "--backend", "tempo", "--url", "http://127.0.0.1:1", "--timeout", "1"], 3, "unreachable"),
        (["runs", "--header", "no-colon", "--backend", "jaeger"], 2, "no-colon"),
        (["runs", "--last", "0"], 2, "positive"),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    done = cli(tmp_path / "traces.sqlite3", *args)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open (Linux's /proc)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(fd) == os.path.realpath(path) for fd in fds.iterdir())
    except OSError:  # the process ended, or an fd closed while listing
        return False


def stored_runs(store: Path) -> list[dict[str, object]]:
    if not store.exists():
        return []
    done = cli(store, "runs", "--json")
    return json.loads(done.stdout) if done.returncode == 0 else []


def test_an_empty_store_has_no_runs(tmp_path: Path) -> None:
    done = cli(tmp_path / "traces.sqlite3", "runs", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == []
    assert not (tmp_path / "traces.sqlite3").exists()


SLOW_JOB = """
    import os, sys, time, uuid
    from otel_runnables import RunnableLambda, dispatch_custom_event
    def work(x):
        for step in range(1, 6):
            if step == 2:
                while not os.path.exists(sys.argv[3]):  # the test lets it go on
                    time.sleep(0.01)
            dispatch_custom_event("progress", {"step": step, "total": 5, "message": f"step {step}"})
        if sys.argv[2] == "fail":
            raise RuntimeError("disk full")
        return x
    RunnableLambda(work).with_config(run_name="slow").invoke(1, {"run_id": uuid.UUID(sys.argv[1])})
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see the follower attach")
@pytest.mark.parametrize(("outcome", "code"), [("ok", 0), ("fail", 1)])
def test_follow_a_job_running_in_another_process(tmp_path: Path, outcome: str, code: int) -> None:
    store, gate = tmp_path / "traces.sqlite3", tmp_path / "go-on"
    run_id = "01234567-89ab-4def-8123-456789abcdef"
    job = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SLOW_JOB), run_id, outcome, str(gate)],
        env=environment(store),
        stderr=subprocess.PIPE,
        text=True,
    )
    follower: subprocess.Popen[str] | None = None
    try:
        # the job is stored as running, held at step 1 until the follower is attached
        deadline = time.monotonic() + 60
        while not any(
            run["run_id"] == run_id and run["status"] == "running" for run in stored_runs(store)
        ):
            assert job.poll() is None and time.monotonic() < deadline, "the job never showed as running"
            time.sleep(0.05)
        follower = subprocess.Popen(
            [sys.executable, "-m", "otel_runnables.cli", "progress", run_id, "--follow", "--interval", "0.1",
             "--json"],
            env=environment(store),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # let the job go on once the follower has the store open: it follows a running job
        while not has_open(follower.pid, store):
            assert follower.poll() is None and time.monotonic() < deadline, "no follower read the store"
            time.sleep(0.01)
        gate.touch()
        stdout, stderr = follower.communicate(timeout=60)
        assert job.wait(30) == (0 if outcome == "ok" else 1)
    finally:
        job.kill()
        if follower is not None:
            follower.kill()
    assert follower.returncode == code, stderr
    (root,) = json.loads(stdout[stdout.index("{") :])["runs"]
    assert root["status"] == ("ok" if outcome == "ok" else "error")
    assert root["progress"]["done"] == 5 and root["progress"]["percent"] == 100
    if outcome == "fail":
        assert "disk full" in root["status_message"]
