"""The ``otel-runnables`` command, driven as a user would: in subprocesses, on a
store written by other processes."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from otel_runnables._store.schema import connect_writer
from tests.child_process import clean_environment, run_captured, run_code, start_captured

CLI = [sys.executable, "-m", "otel_runnables._cli"]


def environment(store: Path) -> dict[str, str]:
    return clean_environment(OTEL_RUNNABLES_STORE=str(store), NO_COLOR="1")


def cli(store: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_captured([*CLI, *args], environment(store), timeout)


def start_cli(
    store: Path, *args: str, stderr: int = subprocess.PIPE, ctrl_c: bool = False
) -> subprocess.Popen[str]:
    """The command started on ``store``; its stdout (and by default its stderr) a text pipe."""
    return start_captured([*CLI, *args], environment(store), stderr=stderr, ctrl_c=ctrl_c)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    store = tmp_path_factory.mktemp("cli") / "traces.sqlite3"
    done = cli(store, "demo", "--steps", "3", "--delay", "0.05")
    assert done.returncode == 0, done.stderr
    assert str(store) in done.stdout and "otel-runnables progress" in done.stdout
    return store, done.stdout


@pytest.fixture(scope="module")
def demo_store(demo_run: tuple[Path, str]) -> Path:
    return demo_run[0]


def test_runs_lists_the_demo(demo_store: Path) -> None:
    done = cli(demo_store, "runs", "--json")
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)
    assert run["name"] == "nightly_etl" and run["status"] == "ok"
    assert len(run["trace_id"]) == 32 and run["duration_ms"] > 0
    assert run["service_name"] == "otel-runnables-demo"
    table = cli(demo_store, "runs")
    assert run["run_id"] in table.stdout and run["trace_id"] in table.stdout


def test_the_demo_ends_with_one_summary_naming_each_id_once(demo_run: tuple[Path, str]) -> None:
    store, output = demo_run
    (run,) = json.loads(cli(store, "runs", "--json").stdout)
    assert output.startswith("running the demo job as service otel-runnables-demo; its spans go to ")
    assert output.count(run["trace_id"]) == 1
    assert output.count(f"run id                  {run['run_id']}\n") == 1
    tree, summary = output.split("\n\n")  # the live tree, then one block
    assert tree.endswith(f"trace {run['trace_id']}")
    assert summary.splitlines()[0] == f"run id                  {run['run_id']}"
    assert summary.endswith(
        "recent runs:            otel-runnables runs\n"
        f"in a browser:           otel-runnables serve, then http://127.0.0.1:8321/runs/{run['run_id']}\n"
    )


def _steps_shown(tree_text: str) -> list[tuple[str, float]]:
    """(name, seconds) of each step line of a drawn demo tree, top to bottom."""
    found = re.findall(r"[├└]── \S+ (\w+)\s+chain\s+([\d.]+) (ms|s)\b", tree_text)
    return [(name, float(value) / (1000 if unit == "ms" else 1)) for name, value, unit in found]


def test_the_demo_and_progress_show_the_steps_in_start_order_with_their_durations(
    demo_run: tuple[Path, str],
) -> None:
    store, output = demo_run
    (run,) = json.loads(cli(store, "runs", "--json").stdout)
    live_tree = output.split("\n\n")[0]  # drawn from the run bus as the job ran in this process
    stored_tree = cli(store, "progress", run["run_id"]).stdout  # read back from the store
    for tree in (live_tree, stored_tree):
        steps = _steps_shown(tree)
        assert [name for name, _ in steps] == ["fetch", "transform", "load"], tree
        transform = dict(steps)["transform"]
        assert transform >= 3 * 0.05 * 0.9, tree  # three chunks of 0.05 s, not the instant it was heard


def test_the_demo_keeps_a_service_name_the_environment_gives(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    done = run_captured(
        [*CLI, "demo", "--steps", "1", "--delay", "0"],
        {**environment(store), "OTEL_SERVICE_NAME": "nightly-billing"},
    )
    assert done.returncode == 0, done.stderr
    assert "as service nightly-billing;" in done.stdout
    (run,) = json.loads(cli(store, "runs", "--json").stdout)
    assert run["service_name"] == "nightly-billing"


def test_the_demo_on_another_store_prints_commands_that_read_it(tmp_path: Path) -> None:
    elsewhere = tmp_path / "my runs" / "traces.sqlite3"
    elsewhere.parent.mkdir()
    done = cli(
        tmp_path / "default.sqlite3", "demo", "--steps", "1", "--delay", "0", "--store", str(elsewhere)
    )
    assert done.returncode == 0, done.stderr
    hints = dict(line.split(":", 1) for line in done.stdout.split("\n\n")[-1].splitlines() if ":" in line)
    shows = {
        "see it again": "nightly_etl",
        "the transform's events": "progress",
        "recent runs": "nightly_etl",
    }
    for label, expected in shows.items():
        words = shlex.split(hints[label])
        assert words[:1] == ["otel-runnables"] and str(elsewhere) in words, hints[label]
        shown = cli(tmp_path / "default.sqlite3", *words[1:])  # the environment names another store
        assert shown.returncode == 0 and expected in shown.stdout, (label, shown.stdout, shown.stderr)
    assert shlex.split(hints["in a browser"].split(",")[0])[1:] == ["serve", "--store", str(elsewhere)]


def test_ctrl_c_in_the_demo_ends_with_one_clean_line(tmp_path: Path) -> None:
    from otel_runnables import progress

    store = tmp_path / "traces.sqlite3"
    # one stream, as a terminal shows them
    demo = start_cli(store, "demo", "--steps", "500", "--delay", "0.1", stderr=subprocess.STDOUT, ctrl_c=True)
    try:
        backend = progress.make_backend("local", path=str(store))
        while True:  # until the job is under way and the live view follows it
            assert demo.poll() is None, demo.communicate()[0]
            transform = _running_transform(backend)
            if transform is not None and transform.progress is not None:
                break
            time.sleep(0.05)
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert demo.returncode == 130, output
    assert "Traceback" not in output
    assert output.endswith("\n")
    before, interrupted = output.splitlines()[-2:]
    assert before.startswith("trace ")  # the live view's last line, ended before the next one
    run_id = str(progress.runs(1, backend)[0].run_id)
    assert interrupted == (
        "interrupted: the demo job stops here; what it recorded stays in the store "
        f"(otel-runnables progress {run_id})"
    )
    (root,) = progress.get(run_id, backend).roots
    assert root.status == "error" and "process exited" in (root.status_message or "")


def _running_transform(backend: Any) -> Any:
    from otel_runnables import progress

    summaries = progress.runs(1, backend)
    if not summaries:
        return None
    for root in progress.get(summaries[0].run_id, backend).roots:
        for child in root.children:
            if child.name == "transform":
                return child
    return None


def test_follow_of_an_unknown_id_says_at_once_how_long_it_waits(tmp_path: Path) -> None:
    run_id = "01234567-89ab-7def-8123-456789abcdef"
    follower = start_cli(tmp_path / "traces.sqlite3", "progress", run_id, "--follow", "--wait", "600")
    try:
        assert follower.stderr is not None
        # told before the 600 s wait is over: the line arrives while it still waits
        line = follower.stderr.readline()
        assert follower.poll() is None
    finally:
        follower.kill()
        follower.communicate()
    assert line == (
        f"otel-runnables: {run_id} is not known yet; waiting up to 600 s for it to appear (--wait)\n"
    )
    done = cli(tmp_path / "traces.sqlite3", "progress", run_id, "--follow", "--wait", "0.3")
    assert done.returncode == 4
    assert done.stderr.splitlines()[0] == (
        f"otel-runnables: {run_id} is not known yet; waiting up to 0.3 s for it to appear (--wait)"
    )
    assert f"no run {run_id}" in done.stderr.splitlines()[-1]
    without_follow = cli(tmp_path / "traces.sqlite3", "progress", run_id)
    assert without_follow.returncode == 4 and "not known yet" not in without_follow.stderr


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


def test_events_of_a_trace_are_those_of_all_its_runs(demo_store: Path) -> None:
    (run,) = json.loads(cli(demo_store, "runs", "--json").stdout)
    done = cli(demo_store, "events", run["trace_id"], "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    by_run = json.loads(cli(demo_store, "progress", run["trace_id"], "--json").stdout)
    expected = []
    stack = list(by_run["runs"])
    while stack:
        node = stack.pop()
        expected += [(event["time_ns"], node["run_id"], node["name"]) for event in node["events"]]
        stack += node["children"]
    assert [(e["time_ns"], e["run_id"], e["run_name"]) for e in events] == sorted(expected)
    assert len(events) >= 3
    table = cli(demo_store, "events", run["trace_id"]).stdout
    assert "transform" in table and "chunk 2 of 3" in table


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["progress", "not-an-id"], 2, "neither a trace id"),
        (["progress", "0" * 31 + "1"], 4, "no trace"),
        (["events", "not-an-id"], 2, "neither a trace id"),
        (["events", "0" * 31 + "1"], 4, "no trace"),
        (["runs", "--backend", "jaeger", "--url", "http://127.0.0.1:1"], 3, "http://127.0.0.1:1"),
        (["runs", "--backend", "tempo", "--url", "http://127.0.0.1:1", "--timeout", "1"], 3, "unreachable"),
        (["runs", "--header", "no-colon", "--backend", "jaeger"], 2, "no-colon"),
        (["runs", "--last", "0"], 2, "positive"),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    connect_writer(tmp_path / "traces.sqlite3").close()  # a store, without that trace
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
    connect_writer(tmp_path / "traces.sqlite3").close()
    done = cli(tmp_path / "traces.sqlite3", "runs", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == []
    missing = tmp_path / "missing.sqlite3"  # no store at all is not "no runs": it says so, exit 4
    done = cli(missing, "runs", "--json")
    assert done.returncode == 4 and f"there is no store file {missing}" in done.stderr
    assert not missing.exists()


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
        while not any(run["run_id"] == run_id and run["status"] == "running" for run in stored_runs(store)):
            assert job.poll() is None and time.monotonic() < deadline, "the job never showed as running"
            time.sleep(0.05)
        follower = start_cli(store, "progress", run_id, "--follow", "--interval", "0.1", "--json")
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
    # JSON Lines only: one whole tree per line, each time it changed
    snapshots = [json.loads(line) for line in stdout.splitlines()]
    assert all(snapshot["runs"][0]["run_id"] == run_id for snapshot in snapshots)
    (root,) = snapshots[-1]["runs"]
    assert root["status"] == ("ok" if outcome == "ok" else "error")
    assert root["progress"]["done"] == 5 and root["progress"]["percent"] == 100
    if outcome == "fail":
        assert "disk full" in root["status_message"]


def test_events_follow_prints_each_event_as_it_is_recorded(tmp_path: Path) -> None:
    from tests.follow_helpers import start_worker, wait_for_line

    store = tmp_path / "traces.sqlite3"
    run_id = "01234567-89ab-7def-8123-456789abcde1"
    worker, gate = start_worker(tmp_path, store, run_id, pause=0.02)
    wait_for_line(worker, "attach now")
    follower = start_cli(store, "events", run_id, "--follow", "--json")
    assert follower.stdout is not None
    first = json.loads(follower.stdout.readline())  # the history comes first
    gate.touch()
    rest = [json.loads(line) for line in follower.stdout]
    assert follower.wait(60) == 0 and worker.wait(60) == 0
    events = [first, *rest]
    assert [(e["name"], e["data"]["step"]) for e in events] == [
        (name, step) for step in range(1, 6) for name in ("progress", "row")
    ]
    assert {e["run_name"] for e in events} == {"job", "transform"}
    assert all(e["time_ns"] > 0 and e["time"].endswith("Z") for e in events)
    text = cli(store, "events", run_id, "--follow")
    assert text.returncode == 0 and text.stdout.count("progress") == 5 and "chunk 5" in text.stdout


def test_progress_follow_json_lines_only(tmp_path: Path) -> None:
    from tests.follow_helpers import start_worker

    store = tmp_path / "traces.sqlite3"
    run_id = "01234567-89ab-7def-8123-456789abcde2"
    worker, gate = start_worker(tmp_path, store, run_id, mode="fail", pause=0.01)
    gate.touch()
    assert worker.wait(60) == 0
    done = cli(store, "progress", run_id, "--follow", "--json")
    assert done.returncode == 1, done.stderr
    (snapshot,) = [json.loads(line) for line in done.stdout.splitlines()]  # ended: one tree, one line
    (root,) = snapshot["runs"]
    assert root["status"] == "error" and "bad row 42" in root["status_message"]
    assert root["progress"]["done"] == 5 and len(root["children"]) == 5


def test_serve_answers_over_http_and_says_how_to_install_it(tmp_path: Path) -> None:
    import urllib.request

    store = tmp_path / "traces.sqlite3"
    server = start_cli(store, "serve", "--port", "0", "--store", str(store))
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith(f"serving runs from the store {store} on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "api/runs") as response:
            assert json.loads(response.read()) == []
            assert "content-security-policy" in {key.lower() for key in response.headers}
    finally:
        server.terminate()
        server.communicate(timeout=30)
    missing = run_code(
        "import sys; sys.modules['uvicorn'] = None; "  # as if the web extra were not installed
        "from otel_runnables._cli import main; sys.exit(main(['serve']))",
        environment(store),
    )
    assert missing.returncode == 2
    assert "pip install 'otel-runnables[web]'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_progress_follow_of_a_killed_job_exits_5(tmp_path: Path) -> None:
    from tests.follow_helpers import start_worker, wait_for_line

    store = tmp_path / "traces.sqlite3"
    run_id = "01234567-89ab-7def-8123-456789abcde3"
    worker, gate = start_worker(tmp_path, store, run_id, mode="hang", pause=0.01)
    gate.touch()
    wait_for_line(worker, "hanging")
    worker.kill()
    worker.wait(60)
    done = cli(store, "progress", run_id, "--follow", "--json")
    assert done.returncode == 5, done.stderr
    (root,) = json.loads(done.stdout.splitlines()[-1])["runs"]
    assert root["status"] == "lost" and "gone" in root["status_message"]


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port the OS gave out, then closed)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


TRACE_ID = "0123456789abcdef0123456789abcdef"
RUN_ID = "01234567-89ab-4def-8123-456789abcdef"


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
@pytest.mark.parametrize(
    "args",
    [
        ["progress", RUN_ID, "--follow", "--json"],
        ["progress", TRACE_ID, "--follow", "--wait", "0"],  # no first look: the follow itself fails
        ["events", TRACE_ID, "--follow"],
        ["events", RUN_ID, "--follow", "--json", "--wait", "0"],
    ],
)
@pytest.mark.parametrize("answer", ["closed port", "garbage"])
def test_following_a_dead_or_garbage_backend_is_one_clear_line(
    tmp_path: Path, backend: str, args: list[str], answer: str
) -> None:
    from tests.bad_servers import Handler, Scripted, serving

    def garbage(handler: Handler) -> None:
        handler.answer(200, b"{garbage")

    paths = ["/api/v3/services", "/api/v3/traces", f"/api/v3/traces/{TRACE_ID}"]
    paths += ["/api/search", f"/api/v2/traces/{TRACE_ID}"]
    with serving(Scripted(routes=dict.fromkeys(paths, garbage))) as server:
        url = _closed_port_url() if answer == "closed port" else server.url()
        done = cli(
            tmp_path / "traces.sqlite3", *args, "--backend", backend, "--url", url, "--interval", "0.05"
        )
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("otel-runnables: ") and done.stderr.count("\n") == 1, done.stderr
    assert url in done.stderr
    assert ("unreachable" if answer == "closed port" else "JSON") in done.stderr
    if answer == "garbage":
        assert any(seen.path in paths for seen in server.seen)  # it was asked, and answered garbage


@pytest.mark.parametrize("args", [["progress", "--json"], ["events"]])
def test_idle_timeout_ends_the_follow_of_a_quiet_run(tmp_path: Path, args: list[str]) -> None:
    from tests.follow_helpers import start_worker, wait_for_line

    store = tmp_path / "traces.sqlite3"
    run_id = "01234567-89ab-7def-8123-456789abcde2"
    worker, gate = start_worker(tmp_path, store, run_id, mode="hang", pause=0.01)
    gate.touch()
    wait_for_line(worker, "hanging")  # its 5 steps are recorded; it goes on, recording nothing
    try:
        command, *rest = args
        done = cli(store, command, run_id, "--follow", "--idle-timeout", "1", *rest)
    finally:
        worker.kill()
        worker.wait(60)
    assert done.returncode == 6, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"run {run_id} has not ended" in done.stderr and "--idle-timeout" in done.stderr
    if command == "progress":  # what it had read is there, as JSON Lines
        last = [json.loads(line) for line in done.stdout.splitlines()][-1]
        assert last["runs"][0]["status"] == "running" and last["runs"][0]["progress"]["done"] == 5
    else:
        assert done.stdout.count("progress") == 5


def test_a_run_quiet_for_longer_than_the_request_timeout_is_still_followed(tmp_path: Path) -> None:
    """--timeout bounds each request to a backend, not the silence of a followed run."""
    from tests.follow_helpers import start_worker, wait_for_line

    store = tmp_path / "traces.sqlite3"
    run_id = "01234567-89ab-7def-8123-456789abcde3"
    worker, gate = start_worker(tmp_path, store, run_id, pause=0.01)
    wait_for_line(worker, "attach now")  # 2 steps done; it waits for the gate
    follower = start_cli(store, "events", run_id, "--follow", "--json", "--timeout", "1")
    try:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())  # it follows the run
        time.sleep(2)  # the run records nothing for twice the request timeout
        gate.touch()
        rest = follower.stdout.read()  # to its end: the follow ended
        assert follower.stderr is not None
        stderr = follower.stderr.read()
        follower.wait(60)
        assert worker.wait(60) == 0
    finally:
        worker.kill()
        follower.kill()
    assert follower.returncode == 0, stderr
    events = [first, *(json.loads(line) for line in rest.splitlines())]
    assert [e["data"]["step"] for e in events if e["name"] == "progress"] == [1, 2, 3, 4, 5]
