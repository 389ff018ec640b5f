"""The pages of ``otel-runnables serve`` in a real headless Chromium, watching
jobs that run in other processes: live progress without a reload, a failed
job's error, a killed job shown as lost, span values that try to inject
HTML or script shown as text, and the README's screenshot.

The jobs wait for the test (a line on their stdin) before each step, so what
the page must show at each moment does not depend on the machine's speed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_context
from tests.child_process import clean_environment, run_captured

WAIT_MS = 30_000  # an upper bound for a slow machine, not an expected time
pytestmark = pytest.mark.browser

JOB = """
    import sys, uuid
    from otel_runnables import RunnableLambda, dispatch_custom_event

    run_id, outcome, steps = uuid.UUID(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    def prepare(rows):
        dispatch_custom_event("progress", {"step": 1, "total": 1, "message": "read orders.csv"})
        return rows

    def work(rows):
        for step in range(1, steps + 1):
            sys.stdin.readline()  # the test's go-ahead
            message = f"chunk {step} of {steps}"
            dispatch_custom_event("progress", {"step": step, "total": steps, "message": message})
            print("step", step, flush=True)
        if outcome == "fail":
            raise RuntimeError("disk full on /data")
        if outcome == "inject":
            dispatch_custom_event(
                "<img src=x onerror=\\"window.__pwned='event name'\\">",
                {"html": "<img src=x onerror=\\"window.__pwned='event data'\\">",
                 "script": "</script><script>window.__pwned='script data'</script>"},
            )
            raise RuntimeError("<img src=x onerror=\\"window.__pwned='error'\\"></script>")
        return {"rows": rows}

    names = {"inject": "<script>window.__pwned='run name'</script>"}
    job = (RunnableLambda(prepare) | RunnableLambda(work)).with_config(
        run_name=names.get(outcome, "nightly_import"),
        tags=["import", "<b>tag</b>"] if outcome == "inject" else ["import"],
        metadata={"team": "<i>data</i>" if outcome == "inject" else "data"},
    )
    print("started", flush=True)
    job.invoke(100, {"run_id": run_id})
"""


def environment(store: Path) -> dict[str, str]:
    return clean_environment(OTEL_RUNNABLES_STORE=str(store), NO_COLOR="1")


def otel_runnables_command() -> list[str]:
    """The installed ``otel-runnables`` script beside this Python, as a user runs it."""
    script = Path(sys.executable).parent / "otel-runnables"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "otel_runnables._cli"]


class Job:
    """A job in its own process that takes one step per ``step()``."""

    def __init__(self, store: Path, run_id: str, outcome: str, steps: int) -> None:
        self.run_id = run_id
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(JOB), run_id, outcome, str(steps)],
            env=environment(store),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.read_line() == "started"

    def read_line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(
                f"the job stopped: {self.process.stderr.read() if self.process.stderr else ''}"
            )
        return line.strip()

    def step(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        assert self.read_line().startswith("step ")

    def finish(self) -> int:
        return self.process.wait(60)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(60)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class Server:
    """``otel-runnables serve`` on an ephemeral port: ``serve --port 0`` and ``arguments``."""

    def __init__(self, *arguments: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [*otel_runnables_command(), "serve", "--port", "0", *arguments],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        seen = []
        for line in self.process.stdout:
            seen.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if found:
                self.url = found.group(1)
                break
        else:
            raise AssertionError(f"the server did not start: {''.join(seen)}")
        # keep reading its log, so a full pipe never blocks it
        self.log = seen
        threading.Thread(target=lambda: self.log.extend(self.process.stdout or ()), daemon=True).start()

    def close(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web") / "traces.sqlite3"


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    with chromium_context() as context:
        yield context


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[Server]:
    served = Server("--store", str(store), env=environment(store))
    yield served
    served.close()


class Watched:
    """A page, and everything it said that a clean page never says."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on(
            "dialog", lambda dialog: (self.problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
        )
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # the browser reports a blocked inline script, style or Trusted Types sink here
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(f"console: {message.text}")


@pytest.fixture
def watched(browser_context: Any) -> Iterator[Watched]:
    page = browser_context.new_page()
    watched = Watched(page)
    yield watched
    page.close()
    assert watched.problems == []


@pytest.fixture
def job_factory(store: Path) -> Iterator[Any]:
    jobs: list[Job] = []

    def start(run_id: str, outcome: str = "ok", steps: int = 4) -> Job:
        job = Job(store, run_id, outcome, steps)
        jobs.append(job)
        return job

    yield start
    for job in jobs:
        job.close()


def expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    return expect


def run_item(page: Any, name: str) -> Any:
    """The tree entry of the run called ``name`` (its own line, not its children's)."""
    return page.locator("li.run", has=page.locator(":scope > .run-head .run-name", has_text=name)).first


def test_a_running_job_shows_live_until_it_ends(server: Server, watched: Watched, job_factory: Any) -> None:
    check = expect()
    page = watched.page
    run_id = "01934b1e-8f7a-7c3e-9d2a-3f5e6a7b8c91"
    job = job_factory(run_id)
    page.goto(server.url + "/")
    row = page.locator(f'#runs tbody tr[data-run-id="{run_id}"]')
    check(row).to_contain_text("nightly_import")
    check(row).to_contain_text("running")
    row.get_by_role("link", name="nightly_import").click()
    page.wait_for_url(f"**/runs/{run_id}")
    # a reload or navigation would drop this mark
    page.evaluate("window.__sameDocument = true")

    work = run_item(page, "work")
    bar = work.locator(":scope > .run-head progress")
    for step in range(1, 5):
        job.step()
        check(work.locator(":scope > .run-head .progress-text")).to_have_text(
            f"{step}/4  {round(100 * step / 4)}%  chunk {step} of 4"
        )
        check(bar).to_have_attribute("value", str(25 * step))
        check(work.locator(":scope > .run-events ol.events > li")).to_have_count(step)
    assert job.finish() == 0
    check(page.locator("#summary .status")).to_have_text("✓ ok")
    check(page.locator("#live")).to_have_text("ended")
    events = work.locator(":scope > .run-events ol.events > li")
    check(events.last.locator(".event-name")).to_have_text("progress")
    check(events.last.locator("pre.json")).to_contain_text('"message": "chunk 4 of 4"')
    check(page.locator(f'#timeline .tl-row[data-run-id="{run_id}"] .tl-bar')).to_have_class(
        re.compile("status-ok")
    )
    assert page.locator("#timeline .tl-marker").count() == 5  # prepare's event and work's four
    assert page.evaluate("window.__sameDocument") is True


def test_a_failed_job_shows_its_error(server: Server, watched: Watched, job_factory: Any) -> None:
    check = expect()
    page = watched.page
    run_id = "01934b1e-8f7a-7c3e-9d2a-3f5e6a7b8c92"
    job = job_factory(run_id, "fail", steps=1)
    page.goto(f"{server.url}/runs/{run_id}")
    check(page.locator("#summary .status")).to_have_text("… running")
    job.step()
    assert job.finish() == 1
    work = run_item(page, "work")
    check(work.locator(":scope > .run-head .error-message")).to_contain_text("disk full on /data")
    check(page.locator("#summary .status")).to_have_text("✗ error")
    check(page.locator("#live")).to_have_text("ended with an error")
    # the whole trace, by its trace id: every run in it links to its own page
    page.locator("#summary a", has_text=re.compile("^[0-9a-f]{32}$")).click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]{32}$"))
    check(page.locator("#tree a.run-name", has_text="work")).to_have_attribute("href", re.compile("/runs/.+"))
    check(run_item(page, "work").locator(":scope > .run-head .error-message")).to_contain_text("disk full")


def test_a_killed_job_shows_lost(server: Server, watched: Watched, job_factory: Any) -> None:
    check = expect()
    page = watched.page
    run_id = "01934b1e-8f7a-7c3e-9d2a-3f5e6a7b8c93"
    job = job_factory(run_id, steps=3)
    job.step()
    page.goto(f"{server.url}/runs/{run_id}")
    check(run_item(page, "work").locator(":scope > .run-head .progress-text")).to_contain_text("1/3")
    job.process.send_signal(signal.SIGKILL)
    job.process.wait(60)
    check(page.locator("#summary .status").first).to_contain_text("lost")
    check(page.locator("#live")).to_contain_text("lost")
    page.goto(f"{server.url}/?status=lost")
    check(page.locator(f'#runs tbody tr[data-run-id="{run_id}"]')).to_contain_text("lost")


def test_values_from_spans_are_text_never_markup(server: Server, watched: Watched, job_factory: Any) -> None:
    check = expect()
    page = watched.page
    run_id = "01934b1e-8f7a-7c3e-9d2a-3f5e6a7b8c94"
    job = job_factory(run_id, "inject", steps=1)
    job.step()
    assert job.finish() == 1
    page.goto(f"{server.url}/runs/{run_id}")
    check(page.locator("#summary h1")).to_have_text("<script>window.__pwned='run name'</script>")
    work = run_item(page, "work")
    event = work.locator(":scope > .run-events ol.events > li").last
    check(event.locator(".event-name")).to_have_text("<img src=x onerror=\"window.__pwned='event name'\">")
    data = event.locator("pre.json")
    check(data).to_contain_text("<img src=x onerror=\\\"window.__pwned='event data'\\\">")
    check(data).to_contain_text("</script><script>window.__pwned='script data'</script>")
    check(work.locator(":scope > .run-head .error-message")).to_contain_text(
        "<img src=x onerror=\"window.__pwned='error'\"></script>"
    )
    check(page.locator("#tree").get_by_text("<b>tag</b>", exact=True).first).to_be_visible()
    check(page.locator("#tree").get_by_text("team=<i>data</i>", exact=True).first).to_be_visible()
    page.goto(f"{server.url}/?name=script")
    check(page.locator(f'#runs tbody tr[data-run-id="{run_id}"] a').first).to_have_text(
        "<script>window.__pwned='run name'</script>"
    )
    for url in (f"{server.url}/runs/{run_id}", f"{server.url}/"):
        page.goto(url)
        check(page.locator("#live")).not_to_have_text("connecting…")
        assert page.locator("img, b, i, script:not([src])").count() == 0
        assert page.evaluate("window.__pwned") is None


def test_the_readme_path_demo_then_serve_and_its_screenshot(watched: Watched, tmp_path: Path) -> None:
    """``otel-runnables demo``, then the ``serve`` command and page it prints, on the default
    store (nothing configured), as the README says. Its page is the README's picture
    (OTEL_RUNNABLES_SCREENSHOT=docs/run-page.png writes it there)."""
    check = expect()
    page = watched.page
    env = clean_environment(XDG_DATA_HOME=str(tmp_path / "data"), NO_COLOR="1")
    demo = run_captured([*otel_runnables_command(), "demo", "--steps", "6", "--delay", "0.05"], env, 120)
    assert demo.returncode == 0, demo.stderr
    assert str(tmp_path / "data" / "otel_runnables" / "traces.sqlite3") in demo.stdout
    found = re.search(
        r"in a browser: +otel-runnables (serve.*), then http://127\.0\.0\.1:8321(/runs/\S+)", demo.stdout
    )
    assert found, demo.stdout
    command, path = found.groups()
    assert command == "serve"
    server = Server(env=env)  # on a free port instead of 8321: other tests run on this machine
    try:
        page.set_viewport_size({"width": 1000, "height": 800})
        page.goto(server.url + path)
        check(page.locator("#live")).to_have_text("ended")
        check(page.locator("#summary h1")).to_have_text("nightly_etl")
        transform = run_item(page, "transform")
        check(transform.locator(":scope > .run-head .progress-text")).to_have_text("6/6  100%  chunk 6 of 6")
        check(transform.locator(":scope > .run-events ol.events > li")).to_have_count(6)
        check(page.locator("#timeline .tl-marker")).to_have_count(8)  # fetch 1, transform 6, load 1
        target = Path(os.environ.get("OTEL_RUNNABLES_SCREENSHOT") or tmp_path / "run-page.png")
        page.screenshot(path=str(target), full_page=True)
        image = target.read_bytes()
        assert image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 20_000
        page.goto(server.url + "/")
        check(page.locator("#runs tbody tr", has_text="nightly_etl")).to_have_count(1)
        # a phone-sized window: everything readable without scrolling sideways
        page.set_viewport_size({"width": 360, "height": 740})
        wider = "document.documentElement.scrollWidth - window.innerWidth"
        assert page.evaluate(wider) <= 0
        page.goto(server.url + path)
        check(page.locator("#live")).to_have_text("ended")
        check(transform.locator(":scope > .run-events ol.events > li")).to_have_count(6)
        assert page.evaluate(wider) <= 0
        text = transform.locator(":scope > .run-head .progress-text")
        text.scroll_into_view_if_needed()
        check(text).to_be_in_viewport(ratio=1)  # whole: not cut off at the right edge
    finally:
        server.close()


def test_the_served_application_is_read_only_and_answers_loopback_names_only(server: Server) -> None:
    with urllib.request.urlopen(server.url + "/", timeout=30) as response:
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    refused = [
        urllib.request.Request(server.url + "/api/runs", headers={"Host": "attacker.example"}),
        urllib.request.Request(server.url + "/api/runs", method="POST", data=b"{}"),
    ]
    for request in refused:
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=30)
        assert error.value.code in (403, 405)
        error.value.close()


class RevealedTrace:
    """What Jaeger or Tempo holds of a job's trace while it runs: the spans the
    job exported, up to ``shown`` of them, in the order it exported them (pending
    spans and event mirrors first, each run's real span when it ended)."""

    def __init__(self, spans: list[Any], backend: str) -> None:
        from tests.test_progress import as_jaeger, as_tempo

        self.spans, self.encode = spans, as_jaeger if backend == "jaeger" else as_tempo
        self.trace_id = f"{spans[0].context.trace_id:032x}"
        self.shown = 0

    def index_after(self, span_type: str, run_id: str) -> int:
        """How many spans were exported up to the first of ``span_type`` for ``run_id``."""
        for index, span in enumerate(self.spans):
            attributes = span.attributes
            if attributes.get("otel_runnables.span_type") == span_type and (
                attributes.get("otel_runnables.run.id") == run_id
            ):
                return index + 1
        raise AssertionError(f"no {span_type} span of run {run_id}")

    def trace(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        return 200, self.encode(self.spans[: self.shown])

    def jaeger_search(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        if not self.shown:
            return 404, {"error": {"httpCode": 404, "message": "No traces found"}}
        return self.trace(query)

    def tempo_search(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        if not self.shown:
            return 200, {"traces": []}
        hit = {
            "traceID": self.trace_id.lstrip("0"),
            "rootServiceName": "<root span not yet received>",
            "startTimeUnixNano": str(self.spans[0].start_time),
        }
        return 200, {"traces": [hit], "metrics": {}}


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_the_same_pages_from_jaeger_and_tempo(
    watched: Watched, use_provider: Any, backend: str, tmp_path: Path
) -> None:
    """``serve --backend jaeger|tempo --url …`` against a fake server answering with
    the spans this library exported, revealed as the job went: the list and the run
    page follow the job live from its first pending span to its real root span."""
    from tests.test_progress import FakeBackend, run_job

    check = expect()
    page = watched.page
    spans, ids = run_job(use_provider)  # nightly: fetch, transform (3 events, a failed child), load
    assert ids.root is not None
    trace = RevealedTrace(spans, backend)
    fake = FakeBackend()
    if backend == "jaeger":
        fake.routes["/api/v3/services"] = (200, {"services": ["unknown_service"]})
        fake.routes["/api/v3/traces"] = trace.jaeger_search
        fake.routes[f"/api/v3/traces/{trace.trace_id}"] = trace.trace
    else:
        fake.routes["/api/search"] = trace.tempo_search
        fake.routes[f"/api/v2/traces/{trace.trace_id}"] = trace.trace
    env = environment(tmp_path / "unused.sqlite3")
    server = Server("--backend", backend, "--url", fake.url, env=env)
    try:
        assert f"serving runs from {backend} at {fake.url}" in server.log[0]
        page.goto(server.url + "/")
        check(page.locator("#empty")).to_be_visible()
        trace.shown = trace.index_after("event", ids.ids["transform"])  # transform's first event
        row = page.locator(f'#runs tbody tr[data-run-id="{ids.root}"]')
        check(row).to_contain_text("running")  # appeared without a reload
        row.get_by_role("link", name="nightly").click()
        page.wait_for_url(f"**/runs/{ids.root}")
        page.evaluate("window.__sameDocument = true")
        transform = run_item(page, "transform")
        check(transform.locator(":scope > .run-head .progress-text")).to_have_text("1/3  33%  chunk 1")
        check(transform.locator(":scope > .run-events ol.events > li")).to_have_count(1)
        check(page.locator("#summary .status")).to_have_text("… running")

        trace.shown = trace.index_after("run", ids.ids["transform"])  # transform ended, its child failed
        check(transform.locator(":scope > .run-head .progress-text")).to_have_text("3/3  100%  chunk 3")
        check(transform.locator(":scope > .run-events ol.events > li")).to_have_count(3)
        flaky = run_item(page, "flaky")
        check(flaky.locator(":scope > .run-head .error-message")).to_contain_text("flaky source")
        check(page.locator("#live")).to_have_text("live")

        trace.shown = len(spans)  # the real root span: the job is over
        check(page.locator("#summary .status")).to_have_text("✓ ok")
        check(page.locator("#live")).to_have_text("ended")
        check(page.locator("#timeline .tl-marker")).to_have_count(3)
        check(run_item(page, "load").locator(":scope > .run-head .status")).to_contain_text("ok")
        assert page.evaluate("window.__sameDocument") is True
        page.goto(server.url + "/?status=ok")
        check(page.locator(f'#runs tbody tr[data-run-id="{ids.root}"]')).to_contain_text("nightly")
    finally:
        server.close()
        fake.close()


HOST_APP = """
    import socket, sys, uvicorn
    import otel_runnables.web

    runs = otel_runnables.web.create_app(path=sys.argv[1])

    async def application(scope, receive, send):
        # what Starlette's Mount("/otel", runs) passes on: the prefix in root_path, the path whole
        if scope["type"] == "http" and (scope["path"] == "/otel" or scope["path"].startswith("/otel/")):
            await runs({**scope, "root_path": scope.get("root_path", "") + "/otel"}, receive, send)
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"the host application's own 404"})

    listening = socket.create_server(("127.0.0.1", 0))
    print(f"http://127.0.0.1:{listening.getsockname()[1]}/", flush=True)
    uvicorn.Server(uvicorn.Config(application, log_level="warning", lifespan="off")).run(sockets=[listening])
"""


def test_the_pages_work_where_an_application_mounts_them(
    watched: Watched, job_factory: Any, store: Path
) -> None:
    """``otel_runnables.web.create_app()`` mounted at /otel in another ASGI application:
    the pages, their files, their API calls and their links all stay under /otel."""
    check = expect()
    page = watched.page
    run_id = "01934b1e-8f7a-7c3e-9d2a-3f5e6a7b8c95"
    job = job_factory(run_id, steps=1)
    job.step()
    assert job.finish() == 0
    host = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOST_APP), str(store)],
        env=environment(store),
        stdout=subprocess.PIPE,
        text=True,
    )
    failed: list[str] = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    try:
        assert host.stdout is not None
        url = host.stdout.readline().strip().rstrip("/")
        assert url.startswith("http://127.0.0.1:"), url
        page.goto(url + "/otel")
        assert page.url == url + "/otel/"
        row = page.locator(f'#runs tbody tr[data-run-id="{run_id}"]')
        check(row).to_contain_text("ok")
        row.get_by_role("link", name="nightly_import").click()
        page.wait_for_url(f"{url}/otel/runs/{run_id}")
        check(run_item(page, "work").locator(":scope > .run-head .progress-text")).to_contain_text("1/1")
        check(page.locator("#live")).to_have_text("ended")
        page.locator("#summary a", has_text=re.compile("^[0-9a-f]{32}$")).click()
        page.wait_for_url(re.compile(rf"^{re.escape(url)}/otel/runs/[0-9a-f]{{32}}$"))
        check(run_item(page, "work").locator(":scope > .run-head .progress-text")).to_contain_text("1/1")
        page.locator("header a.brand").click()
        page.wait_for_url(url + "/otel/")
        check(page.locator(f'#runs tbody tr[data-run-id="{run_id}"]')).to_be_visible()
        assert page.evaluate("getComputedStyle(document.querySelector('header.bar')).display") == "flex"
        assert failed == []
    finally:
        host.terminate()
        host.wait(30)
        if host.stdout is not None:
            host.stdout.close()
