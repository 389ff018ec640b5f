"""otel_runnables.web over real HTTP: a real ASGI server (uvicorn) on an
ephemeral port, a streaming HTTP client (httpx), jobs in worker processes
writing a real store file."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from otel_runnables import web
from otel_runnables._runs import new_run_id
from otel_runnables.progress.store_poller import StorePoller
from tests.asgi import asgi_request
from tests.follow_helpers import expected_kinds, start_worker, wait_for_line, wait_until


class Server:
    """uvicorn serving ``app`` in a thread, on a port the OS chose."""

    def __init__(self, app: Any) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "traces.sqlite3"


@pytest.fixture
def server(store: Path) -> Iterator[Server]:
    running = Server(web.create_app(path=str(store), keepalive=0.2))
    yield running
    running.close()


class Sse:
    """Server-sent events read from a streaming response, one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()
        self.comments: list[str] = []

    def next(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        data: list[str] = []
        for line in self.lines:
            if line == "":
                if data or "event" in fields:
                    fields["data"] = json.loads("\n".join(data)) if data else None
                    return fields
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        raise EOFError("the stream ended")


def test_json_routes(server: Server, store: Path, tmp_path: Path) -> None:
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id, pause=0.01)
    gate.touch()
    assert worker.wait(60) == 0
    rows = httpx.get(f"{server.url}/api/runs?last=5").json()
    assert [row["run_id"] for row in rows] == [run_id] and rows[0]["status"] == "ok"
    tree = httpx.get(f"{server.url}/api/runs/{run_id}").json()
    assert tree["runs"][0]["name"] == "job" and len(tree["runs"][0]["children"]) == 5
    assert httpx.get(f"{server.url}/api/runs/{rows[0]['trace_id']}").json()["trace_id"] == rows[0]["trace_id"]
    bad = httpx.get(f"{server.url}/api/runs/not-an-id")
    assert bad.status_code == 400 and "neither" in bad.json()["error"]
    missing = httpx.get(f"{server.url}/api/runs/{new_run_id()}")
    assert missing.status_code == 404 and "error" in missing.json()
    assert httpx.get(f"{server.url}/api/runs?last=0").status_code == 400
    assert httpx.get(f"{server.url}/api/runs?last=lots").status_code == 400
    assert httpx.get(f"{server.url}/api/nothing").status_code == 404
    assert httpx.post(f"{server.url}/api/runs").status_code == 405
    assert httpx.get(f"{server.url}/").headers["content-type"].startswith("text/html")  # the pages


def test_events_replay_then_live_and_resume_with_last_event_id(
    server: Server, store: Path, tmp_path: Path
) -> None:
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id)
    wait_for_line(worker, "attach now")
    url = f"{server.url}/api/runs/{run_id}/events"
    received: list[dict[str, Any]] = []
    with httpx.stream("GET", url, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = Sse(response)
        for _ in range(4):  # the job's start and part of the history, then the client goes away
            received.append(events.next())
    # the follower of that connection is released
    wait_until(lambda: StorePoller.active() == 0)
    last_id = received[-1]["id"]
    with httpx.stream("GET", url, headers={"Last-Event-ID": last_id}, timeout=60) as response:
        events = Sse(response)
        received.append(events.next())  # the first event after the one it had
        gate.touch()
        while (event := events.next())["event"] != "end":
            received.append(event)
        assert event["data"] == {"status": "ok"}
    assert worker.wait(60) == 0
    kinds = [(e["event"], e["data"]["name"]) for e in received]
    assert kinds == [*expected_kinds(), ("on_chain_end", "job")]  # nothing twice, nothing missing
    assert len({e["id"] for e in received}) == len(received)
    assert all(e["data"]["event"] == e["event"] for e in received)
    assert received[0]["data"]["run_id"] == run_id and received[0]["data"]["data"] == {"input": 5}


class LoopWatch:
    """Wraps an ASGI app to learn the server's event loop, so a test can count its tasks."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def tasks(self) -> int:
        assert self.loop is not None

        async def count() -> int:
            return len(asyncio.all_tasks())

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(30)


def _follower_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("otel_runnables-follow"))


@pytest.mark.parametrize("backend", ["local", "jaeger"])
def test_a_client_that_disconnects_releases_its_follower(store: Path, backend: str) -> None:
    """The client goes away while its follower waits for a run not recorded yet:
    no task, poller thread or backend-reading thread is left behind."""
    from tests.test_progress import FakeBackend

    fake = FakeBackend()  # a Jaeger whose search never finds the run
    fake.routes["/api/v3/services"] = (200, {"services": ["unknown_service"]})
    fake.routes["/api/v3/traces"] = (404, {"error": {"httpCode": 404}})
    options: dict[str, Any] = {"path": str(store)} if backend == "local" else {"url": fake.url}
    watch = LoopWatch(web.create_app(backend, keepalive=0.2, **options))
    running = Server(watch)
    try:
        httpx.get(f"{running.url}/api/runs?last=1")  # the server's loop is known
        wait_until(lambda: _follower_threads() == 0)
        idle_tasks = watch.tasks()
        url = f"{running.url}/api/runs/{new_run_id()}/events?wait=600"
        with httpx.stream("GET", url, timeout=60) as response:
            lines = response.iter_lines()
            while not next(lines).startswith(": keep-alive"):  # the follower is waiting
                pass
            assert _follower_threads() == 1 and watch.tasks() > idle_tasks
        wait_until(lambda: _follower_threads() == 0)
        wait_until(lambda: watch.tasks() == idle_tasks)
        assert StorePoller.active() == 0
    finally:
        running.close()
        fake.close()


def test_keep_alive_comments_while_nothing_happens(server: Server, store: Path, tmp_path: Path) -> None:
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id)
    wait_for_line(worker, "attach now")
    with httpx.stream("GET", f"{server.url}/api/runs/{run_id}/events?since=now", timeout=60) as response:
        events = Sse(response)
        while "keep-alive" not in events.comments:  # the job waits at its gate: only keep-alives come
            line = next(events.lines)
            if line.startswith(":"):
                events.comments.append(line[1:].strip())
        gate.touch()
        first = events.next()
        assert first["event"] == "on_custom_event" and first["data"]["data"]["step"] == 3
    assert worker.wait(60) == 0


def test_a_failed_job_and_an_unknown_run_end_the_stream_with_a_status(
    server: Server, store: Path, tmp_path: Path
) -> None:
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id, mode="fail", pause=0.01)
    gate.touch()
    assert worker.wait(60) == 0
    with httpx.stream("GET", f"{server.url}/api/runs/{run_id}/events", timeout=60) as response:
        events = Sse(response)
        while (event := events.next())["event"] != "end":
            pass
    assert event["data"] == {"status": "error", "error_type": "ValueError", "message": "bad row 42"}
    with httpx.stream(
        "GET", f"{server.url}/api/runs/{new_run_id()}/events?wait=0.05", timeout=60
    ) as response:
        end = Sse(response).next()
    assert end["event"] == "end" and end["data"]["status"] == "not_found"
    bad = httpx.get(f"{server.url}/api/runs/{new_run_id()}/events?since=never")
    assert bad.status_code == 400
    assert httpx.get(f"{server.url}/api/runs/nope/events").status_code == 400


def test_a_killed_job_ends_the_stream_with_lost(server: Server, store: Path, tmp_path: Path) -> None:
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id, mode="hang", pause=0.01)
    try:
        gate.touch()
        wait_for_line(worker, "hanging")  # its 5 steps are recorded; it never ends by itself
        received: list[dict[str, Any]] = []
        with httpx.stream("GET", f"{server.url}/api/runs/{run_id}/events", timeout=60) as response:
            events = Sse(response)
            received.append(events.next())  # following a job that is running
            worker.kill()  # SIGKILL: its process writes nothing more, not even an end
            worker.wait(60)
            while (event := events.next())["event"] != "end":
                received.append(event)
            with pytest.raises(EOFError):
                events.next()  # the end is the last thing the stream says
    finally:
        worker.kill()
        worker.wait(60)
    assert [(e["event"], e["data"]["name"]) for e in received] == expected_kinds()  # no end for the job
    assert event["data"]["status"] == "lost"
    assert run_id in event["data"]["message"] and "the process running it is gone" in event["data"]["message"]


def test_mounted_under_a_prefix(store: Path) -> None:
    """What a framework's mount passes: the prefix in root_path, the path with or without it."""
    app = web.create_app(path=str(store))

    def call(path: str, root_path: str) -> tuple[int, bytes]:
        start, body = asgi_request(app, path, root_path=root_path, query_string=b"last=1")
        return start["status"], body["body"]

    assert call("/otel/api/runs", "/otel") == (200, b"[]")
    assert call("/api/runs", "/otel") == (200, b"[]")


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("attach_to_job.py", [f"  progress {n}/4: {name}.csv" for n, name in enumerate("abcd", 1)]),
        ("worker_and_api.py", [f"  progress {n}/5: img{n}.png" for n in range(1, 6)] + ["end: ok"]),
    ],
)
def test_examples(example: str, expected: list[str], tmp_path: Path) -> None:
    import sys

    from tests.child_process import ROOT, clean_environment, run_captured

    env = clean_environment(OTEL_RUNNABLES_STORE=str(tmp_path / "traces.sqlite3"))
    done = run_captured([sys.executable, str(ROOT / "examples" / example)], env, 120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line in expected] == expected  # all of them, in order
