"""follow(): a run's v2 events read back from its record, from other processes
(real worker and follower processes on a real store file), from Jaeger and
Tempo (fake servers answering with spans this library exported), and in the
same process, where it must give what the bus gives."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import otel_runnables
from otel_runnables import (
    FollowTimeoutError,
    RunFailedError,
    RunnableLambda,
    RunNotFoundError,
    adispatch_custom_event,
    dispatch_custom_event,
)
from otel_runnables._runs import new_run_id
from otel_runnables._store import LocalStoreSpanProcessor
from otel_runnables.progress import InvalidIdError, UnknownBackendError
from otel_runnables.progress.store_poller import StorePoller
from tests.conftest import StoreAt
from tests.follow_helpers import (
    expected_kinds,
    lines_of,
    start_follower,
    start_worker,
    wait_for_line,
    wait_until,
)

# -- another process ----------------------------------------------------------------------


def test_a_follower_attaching_mid_run_gets_everything_in_order(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id)
    wait_for_line(worker, "attach now")  # 2 progress events are done
    follower = start_follower(tmp_path, store, run_id)
    events = lines_of(follower)
    seen = [next(events)]  # attached: the history is being replayed
    gate.touch()  # events 3 to 5 happen while it follows
    seen += list(events)
    assert worker.wait(60) == 0 and follower.wait(60) == 0
    assert [(e["event"], e["name"]) for e in seen] == [*expected_kinds(), ("on_chain_end", "job")]
    root = seen[0]
    assert root["run_id"] == run_id and root["parent_ids"] == [] and root["data"] == {"input": 5}
    assert root["tags"] == ["nightly"] and root["metadata"] == {"team": "data"}
    progress = [e for e in seen if e["name"] == "progress"]
    assert [e["data"]["step"] for e in progress] == [1, 2, 3, 4, 5]
    assert all(e["run_id"] == run_id and e["parent_ids"] == [] for e in progress)
    children = {e["run_id"] for e in seen if e["name"] == "transform"}
    assert len(children) == 5 and run_id not in children
    for event in seen:
        if event["name"] in ("transform", "row"):
            assert event["parent_ids"] == [run_id] and event["run_id"] in children
    assert [e["data"] for e in seen if e["name"] == "row"] == [
        {"step": s, "rows": s * 10} for s in range(1, 6)
    ]
    assert seen[-1]["data"] == {"output": 5, "input": 5}


def test_a_failed_job_ends_the_follow_with_its_error(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id, mode="fail", pause=0.05)
    gate.touch()
    follower = start_follower(tmp_path, store, run_id)
    seen = list(lines_of(follower))
    assert worker.wait(60) == 0 and follower.wait(60) == 0
    *events, failure = seen
    assert [(e["event"], e["name"]) for e in events] == expected_kinds()  # no end for the failed root
    assert failure["raised"] == "RunFailedError"
    assert (failure["error_type"], failure["error_message"]) == ("ValueError", "bad row 42")
    assert run_id in failure["text"]


def test_a_killed_job_is_lost_for_its_follower(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id, mode="hang", pause=0.01)
    gate.touch()
    wait_for_line(worker, "hanging")
    follower = start_follower(tmp_path, store, run_id)
    events = lines_of(follower)
    seen = [next(events)]  # following a job that is running
    worker.kill()
    worker.wait(60)
    seen += list(events)
    assert follower.wait(60) == 0
    *followed, lost = seen
    assert [(e["event"], e["name"]) for e in followed] == expected_kinds()
    assert lost["raised"] == "RunLostError"
    assert run_id in lost["text"] and "the process running it is gone" in lost["text"]


def test_since_now_skips_the_history(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id, pause=0.05)
    wait_for_line(worker, "attach now")
    follow = otel_runnables.follow_sync(run_id, path=store, since="now", timeout=60)
    # attached once its history is read (and skipped): until then the worker waits at the gate
    assert follow._feed.attached.wait(30)
    gate.touch()
    seen = list(follow)
    assert worker.wait(60) == 0
    assert [e["data"]["step"] for e in seen if e["name"] == "progress"] == [3, 4, 5]
    assert not any(e["event"] == "on_chain_start" and e["name"] == "job" for e in seen)
    assert seen[-1]["event"] == "on_chain_end" and seen[-1]["name"] == "job"


def test_followers_of_one_store_share_one_poller(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id, pause=0.02)
    wait_for_line(worker, "attach now")
    follows = [otel_runnables.follow_sync(run_id, path=store, timeout=60) for _ in range(5)]
    assert StorePoller.active() == 1
    firsts = [next(follow) for follow in follows]
    assert all(first["name"] == "job" for first in firsts)
    gate.touch()
    results = [[*firsts[:1], *follow] for follow in follows]
    assert worker.wait(60) == 0
    assert all(len(result) == len(expected_kinds()) + 1 for result in results)
    wait_until(lambda: StorePoller.active() == 0)  # the last follower gone, the poller stops


def test_unknown_ids_bad_ids_and_bad_options_are_typed(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    with pytest.raises(RunNotFoundError, match="no run"):
        list(otel_runnables.follow_sync(str(uuid.uuid4()), path=store, wait=0.1))
    with pytest.raises(InvalidIdError):
        otel_runnables.follow_sync("not an id", path=store)
    with pytest.raises(UnknownBackendError):
        otel_runnables.follow_sync(str(uuid.uuid4()), backend="zipkin")
    with pytest.raises(ValueError, match="since"):
        otel_runnables.follow_sync(str(uuid.uuid4()), path=store, since="yesterday")
    with pytest.raises(ValueError, match="wait"):
        otel_runnables.follow_sync(str(uuid.uuid4()), path=store, wait=-1)


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_store_removed_or_replaced_mid_follow_is_a_clear_error(tmp_path: Path, how: str) -> None:
    store = tmp_path / "traces.sqlite3"
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id, pause=0.02)
    wait_for_line(worker, "attach now")
    follow = otel_runnables.follow_sync(run_id, path=store, timeout=60)
    assert next(follow)["name"] == "job"
    if how == "removed":
        for path in tmp_path.glob("traces.sqlite3*"):
            path.unlink()
    else:  # another store moved over it (a restore from a backup, a redeploy)
        other = tmp_path / "other" / "traces.sqlite3"
        other.parent.mkdir()
        other_worker, other_gate = start_worker(other.parent, other, str(new_run_id()), pause=0.01)
        other_gate.touch()
        assert other_worker.wait(60) == 0
        os.replace(other, store)
    from otel_runnables._store.tail import StoreGoneError

    with pytest.raises(StoreGoneError, match=how):
        list(follow)
    wait_until(lambda: StorePoller.active() == 0)
    gate.touch()
    worker.wait(60)


# -- the same process: the bus and the record give the same events ---------------------------


def normalised(event: dict[str, Any]) -> dict[str, Any]:
    """An in-process event as its record holds it: payloads as JSON values."""
    return json.loads(json.dumps(event, default=str))


@pytest.fixture
def store_provider(store_at: StoreAt, tmp_path: Path) -> LocalStoreSpanProcessor:
    return store_at(tmp_path / "traces.sqlite3", flush_interval=0.01)


def nested_job(gate: threading.Event | None = None) -> RunnableLambda:
    def leaf(x: dict[str, Any]) -> dict[str, Any]:
        dispatch_custom_event("leaf", {"x": x["n"]})
        return {"n": x["n"] * 2, "label": "léaf"}

    def job(x: int) -> list[Any]:
        results = []
        for step in range(1, 4):
            dispatch_custom_event("progress", {"step": step, "total": 3})
            if gate is not None and step == 2:
                gate.wait(10)
            results.append(RunnableLambda(leaf, name="leaf").invoke({"n": step}))
        pipeline = RunnableLambda(lambda v: v + 1, name="plus") | RunnableLambda(
            lambda v: v * 3, name="times"
        )
        results.append(pipeline.invoke(x))
        return results

    return RunnableLambda(job, name="job").with_config(tags=["t1"], metadata={"owner": "me"})


def test_follow_from_the_record_equals_the_bus(store_provider: LocalStoreSpanProcessor) -> None:
    run_id = new_run_id()
    on_the_bus = otel_runnables.subscribe_sync(run_id, wait=10)  # attached before it starts
    nested_job().invoke(4, {"run_id": run_id})
    live = [normalised(e) for e in on_the_bus if not e["event"].endswith("_stream")]
    store_provider.force_flush()
    replayed = list(otel_runnables.follow_sync(run_id, path=store_provider.path, timeout=30))
    assert replayed == live
    names = [(e["event"], e["name"]) for e in replayed]
    assert names[0] == ("on_chain_start", "job") and names[-1] == ("on_chain_end", "job")
    assert ("on_custom_event", "leaf") in names and ("on_chain_end", "times") in names


async def test_follow_of_a_run_live_here_uses_the_bus_after_its_history(
    store_provider: LocalStoreSpanProcessor,
) -> None:
    from otel_runnables.progress.feeds import BusFeed

    gate = threading.Event()
    run_id = new_run_id()
    on_the_bus = otel_runnables.subscribe_sync(run_id, wait=10)
    running = asyncio.get_running_loop().run_in_executor(
        None, lambda: nested_job(gate).invoke(4, {"run_id": run_id})
    )
    first = await anext(
        otel_runnables.follow(run_id, path=store_provider.path)
    )  # waits for it to be recorded
    assert first["name"] == "job"
    follow = otel_runnables.follow(run_id, path=store_provider.path)  # live here now: on the bus
    assert isinstance(follow._feed, BusFeed)
    history = [await anext(follow), await anext(follow)]  # the start and step 1, from the record
    gate.set()
    followed = history + [e async for e in follow]
    await running
    live = [normalised(e) for e in on_the_bus if not e["event"].endswith("_stream")]
    assert followed == live


async def test_follow_async_and_filters(store_provider: LocalStoreSpanProcessor) -> None:
    run_id = new_run_id()

    async def job(x: int) -> int:
        for step in range(3):
            await adispatch_custom_event("progress", {"step": step})
            await adispatch_custom_event("noise", {"step": step})
        return x

    await RunnableLambda(job, name="job").ainvoke(1, {"run_id": run_id})
    store_provider.force_flush()
    async with otel_runnables.follow(run_id, path=store_provider.path, include_names=["progress"]) as events:
        seen = [e async for e in events]
    assert [(e["event"], e["data"]) for e in seen] == [("on_custom_event", {"step": s}) for s in range(3)]


def test_subscribe_since_start_replays_the_record_then_goes_live(
    store_provider: LocalStoreSpanProcessor,
) -> None:
    gate = threading.Event()
    run_id = new_run_id()
    on_the_bus = otel_runnables.subscribe_sync(run_id, wait=10)
    worker = threading.Thread(target=lambda: nested_job(gate).invoke(4, {"run_id": run_id}))
    worker.start()
    first = next(on_the_bus)
    assert first["name"] == "job"
    late = otel_runnables.subscribe_sync(run_id, since="start", timeout=30)
    replayed = [next(late) for _ in range(6)]  # what happened before it attached, from the record
    gate.set()
    rest = list(late)
    worker.join(10)
    everything = [first, *on_the_bus]
    assert [normalised(e) for e in replayed] == [normalised(e) for e in everything[:6]]
    # live events are the objects themselves; nothing twice, nothing missing
    assert [(e["event"], e["name"], e["run_id"]) for e in [*replayed, *rest]] == [
        (e["event"], e["name"], e["run_id"]) for e in everything
    ]
    # an ended run: its history, then the end (since="now": just the end)
    assert [normalised(e) for e in otel_runnables.subscribe_sync(run_id, since="start")] == [
        normalised(e) for e in everything if not e["event"].endswith("_stream")
    ]
    assert list(otel_runnables.subscribe_sync(run_id)) == []


def _three_steps_with_gates(gates: list[threading.Event], dispatched: threading.Event) -> RunnableLambda:
    def job(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1})
        gates[0].wait(30)
        dispatch_custom_event("progress", {"step": 2})
        dispatched.set()
        gates[1].wait(30)
        dispatch_custom_event("progress", {"step": 3})
        return x

    return RunnableLambda(job, name="job")


@pytest.mark.parametrize("attach", ["subscribe_sync", "follow_sync"])
def test_an_event_in_both_the_history_and_the_bus_is_given_once(
    store_provider: LocalStoreSpanProcessor, attach: str
) -> None:
    """An event published after the follower attached and before it read the
    record is in both: the number the run gives it tells them apart."""
    gates, dispatched = [threading.Event(), threading.Event()], threading.Event()
    run_id = new_run_id()
    on_the_bus = otel_runnables.subscribe_sync(run_id, wait=10)
    job = _three_steps_with_gates(gates, dispatched)
    worker = threading.Thread(target=lambda: job.invoke(0, {"run_id": run_id}))
    worker.start()
    assert next(on_the_bus)["event"] == "on_chain_start"
    if attach == "subscribe_sync":
        late = otel_runnables.subscribe_sync(run_id, since="start", timeout=30)
    else:
        late = otel_runnables.follow_sync(run_id, path=store_provider.path, timeout=30)
    gates[0].set()  # step 2 happens after it attached, before its first read
    assert dispatched.wait(30)
    first = [next(late) for _ in range(3)]  # the start, steps 1 and 2
    gates[1].set()
    seen = [*first, *late]
    worker.join(30)
    steps = [e["data"]["step"] for e in seen if e["event"] == "on_custom_event"]
    assert steps == [1, 2, 3]
    assert [e["event"] for e in seen] == ["on_chain_start", *["on_custom_event"] * 3, "on_chain_end"]


def test_subscribe_since_start_without_a_store_says_why() -> None:
    run_id = new_run_id()
    gate = threading.Event()
    worker = threading.Thread(target=lambda: nested_job(gate).invoke(1, {"run_id": run_id}))
    on_the_bus = otel_runnables.subscribe_sync(run_id, wait=10)
    worker.start()
    next(on_the_bus)
    with pytest.raises(RunNotFoundError, match="does not write"):
        next(otel_runnables.subscribe_sync(run_id, since="start"))
    gate.set()
    worker.join(10)


# -- Jaeger and Tempo: fake servers answering with spans this library exported ---------------


@pytest.fixture
def fake() -> Any:
    from tests.test_progress import FakeBackend

    server = FakeBackend()
    yield server
    server.close()


class GrowingTrace:
    """A backend's view of a job while it runs: each read of the trace holds
    more of the spans, in the order they were exported (pending spans and
    event mirrors first, each run's real span when it ended)."""

    def __init__(self, spans: list[Any], encode: Callable[[list[Any]], Any], step: int = 2) -> None:
        self.spans, self.encode, self.step = spans, encode, step
        self.shown = 0
        self.reads = 0

    def __call__(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        self.reads += 1
        self.shown = min(len(self.spans), self.shown + self.step)
        return 200, self.encode(self.spans[: self.shown])


def _followed(run_id: str, **options: Any) -> tuple[list[dict[str, Any]], BaseException | None]:
    seen: list[dict[str, Any]] = []
    try:
        for event in otel_runnables.follow_sync(run_id, interval=0.01, wait=30, timeout=30, **options):
            seen.append(event)
    except RunFailedError as exc:
        return seen, exc
    return seen, None


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_follow_over_jaeger_and_tempo_while_the_trace_grows(
    fake: Any, use_provider: Callable[[Any], None], backend: str
) -> None:
    from tests.test_progress import as_jaeger, as_tempo, run_job

    spans, ids = run_job(use_provider)
    assert ids.root is not None
    trace_id = f"{spans[0].context.trace_id:032x}"
    encode = as_jaeger if backend == "jaeger" else as_tempo
    growing = GrowingTrace(spans, encode)
    searches = {"count": 0}

    def search(query: dict[str, list[str]]) -> tuple[int, Any]:
        searches["count"] += 1
        if searches["count"] <= 2:  # search lag: the trace is not indexed yet
            return (404, {"error": {"httpCode": 404}}) if backend == "jaeger" else (200, {"traces": []})
        if backend == "jaeger":
            return 200, encode(spans[:1])
        return 200, {
            "traces": [{"traceID": trace_id.lstrip("0"), "rootServiceName": "<root span not yet received>"}]
        }

    if backend == "jaeger":
        fake.routes["/api/v3/services"] = (200, {"services": ["unknown_service"]})
        fake.routes["/api/v3/traces"] = search
        fake.routes[f"/api/v3/traces/{trace_id}"] = growing
    else:
        fake.routes["/api/search"] = search
        fake.routes[f"/api/v2/traces/{trace_id}"] = growing
    seen, failure = _followed(ids.root, backend=backend, url=fake.url)
    assert failure is None
    assert growing.reads > 3 and growing.shown == len(spans)  # followed while it grew, to the end
    kinds = [(e["event"], e["name"]) for e in seen]
    assert kinds[0] == ("on_chain_start", "nightly") and kinds[-1] == ("on_chain_end", "nightly")
    progress = [e["data"]["step"] for e in seen if e["event"] == "on_custom_event"]
    assert progress == [1, 2, 3]  # each once, although seen as span events and as mirror spans
    assert ("on_chain_start", "flaky") in kinds and ("on_chain_end", "flaky") not in kinds  # failed: no end
    for name in ("fetch", "transform", "load"):
        assert kinds.index(("on_chain_start", name)) < kinds.index(("on_chain_end", name))
    transform = next(e for e in seen if e["name"] == "transform")
    assert transform["parent_ids"] == [ids.root] and transform["tags"] == ["seq:step:2", "etl"]
    assert next(e for e in seen if e["event"] == "on_custom_event")["tags"] == ["etl"]
    # the same trace read whole: the same events
    whole = GrowingTrace(spans, encode, step=len(spans))
    if backend == "jaeger":
        fake.routes[f"/api/v3/traces/{trace_id}"] = whole
    else:
        fake.routes[f"/api/v2/traces/{trace_id}"] = whole
    again, _ = _followed(ids.root, backend=backend, url=fake.url)
    assert [(e["event"], e["name"], e["run_id"]) for e in again] == [
        (e["event"], e["name"], e["run_id"]) for e in seen
    ]


def test_a_backend_that_fails_is_a_typed_error(fake: Any) -> None:
    from otel_runnables.progress import BackendUnavailableError, MalformedResponseError

    fake.routes["/api/v3/services"] = (500, "down")
    with pytest.raises(BackendUnavailableError, match="500"):
        list(otel_runnables.follow_sync(str(uuid.uuid4()), backend="jaeger", url=fake.url, interval=0.01))
    trace_id = "ab" * 16
    fake.routes[f"/api/v3/traces/{trace_id}"] = (200, "{garbage")
    with pytest.raises(MalformedResponseError):
        list(otel_runnables.follow_sync(trace_id, backend="jaeger", url=fake.url, interval=0.01))
    with pytest.raises(RunNotFoundError, match="after waiting"):
        list(otel_runnables.follow_sync("cd" * 16, backend="tempo", url=fake.url, interval=0.01, wait=0.05))


def test_a_follower_that_stops_reading_skips_then_rereads_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_runnables.progress import feeds

    monkeypatch.setattr(feeds, "INBOX_LIMIT", 1)  # so that two batches overflow it
    store = tmp_path / "traces.sqlite3"
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id, pause=0.3)  # a batch per step
    wait_for_line(worker, "attach now")
    follow = otel_runnables.follow_sync(run_id, path=store, timeout=60)
    seen = [next(follow)]
    gate.touch()
    assert worker.wait(60) == 0  # the job ran to its end while nobody read
    wait_until(lambda: follow.dropped > 0)
    seen += list(follow)
    assert [(e["event"], e["name"]) for e in seen] == [*expected_kinds(), ("on_chain_end", "job")]


def test_follow_by_trace_id_gives_every_root_of_the_trace(store_provider: LocalStoreSpanProcessor) -> None:
    from otel_runnables import _telemetry as telemetry

    # an application's own span (say, a web request) holding two root runs
    with telemetry.get_tracer().start_as_current_span("request") as request:
        RunnableLambda(lambda x: x, name="one").invoke(1)
        RunnableLambda(lambda x: x, name="two").invoke(2)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    store_provider.force_flush()
    seen = list(otel_runnables.follow_sync(trace_id, path=store_provider.path, timeout=30))
    assert [(e["event"], e["name"], e["parent_ids"]) for e in seen] == [
        ("on_chain_start", "one", []),
        ("on_chain_end", "one", []),
        ("on_chain_start", "two", []),
        ("on_chain_end", "two", []),
    ]


# -- Jaeger and Tempo: a job of 5 steps, as follow_helpers' worker runs it ------------------


def five_step_job(use_provider: Callable[[Any], None], *, fail: bool = False) -> tuple[list[Any], str]:
    """The worker's job (5 progress events, each with a ``transform`` child and its
    ``row`` event), run here with every run announced and every event mirrored:
    its spans in the order they were exported, and the root's run id."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_runnables import _liveness as liveness

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_provider(provider)

    def transform(step: int) -> int:
        dispatch_custom_event("row", {"step": step, "rows": step * 10})
        return step * 10

    def job(total: int) -> int:
        for step in range(1, total + 1):
            dispatch_custom_event("progress", {"step": step, "total": total})
            RunnableLambda(transform, name="transform").invoke(step)
        if fail:
            raise ValueError("bad row 42")
        return total

    run_id = new_run_id()
    before = liveness.liveness_delay()
    liveness.configure_liveness(True, 0, 0)  # announced at once, every event mirrored
    try:
        RunnableLambda(job, name="job").invoke(5, {"run_id": run_id, "tags": ["nightly"]})
    except ValueError:
        pass
    finally:
        liveness.configure_liveness(before is not None, before)
    return list(exporter.get_finished_spans()), str(run_id)


class TraceFrom(GrowingTrace):
    """A trace whose first read holds ``spans[:first]``, then grows by ``step``
    spans a read up to ``last`` (a job whose process died never sends the rest)."""

    def __init__(
        self, spans: list[Any], encode: Callable[[list[Any]], Any], first: int, last: int | None = None
    ) -> None:
        super().__init__(spans[:last] if last is not None else spans, encode)
        self.shown = first - self.step  # the first read shows `first` spans
        self.first_read: list[Any] | None = None

    def __call__(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        answer = super().__call__(query)
        if self.first_read is None:
            self.first_read = self.spans[: self.shown]
        return answer


def serve_trace(fake: Any, backend: str, spans: list[Any], trace: GrowingTrace) -> None:
    """Route the fake backend's search (found at once) and trace reads to ``trace``."""
    from tests.test_progress import as_jaeger

    trace_id = f"{spans[0].context.trace_id:032x}"
    if backend == "jaeger":
        fake.routes["/api/v3/services"] = (200, {"services": ["unknown_service"]})
        fake.routes["/api/v3/traces"] = (200, as_jaeger(spans[:1]))
        fake.routes[f"/api/v3/traces/{trace_id}"] = trace
    else:
        fake.routes["/api/search"] = (
            200,
            {"traces": [{"traceID": trace_id, "rootServiceName": "<root span not yet received>"}]},
        )
        fake.routes[f"/api/v2/traces/{trace_id}"] = trace


def _encoder(backend: str) -> Callable[[list[Any]], Any]:
    from tests.test_progress import as_jaeger, as_tempo

    return as_jaeger if backend == "jaeger" else as_tempo


def _mirror_index(spans: list[Any], name: str, nth: int) -> int:
    """The position of the ``nth`` mirror span of event ``name`` among the exported spans."""
    mirrors = [i for i, span in enumerate(spans) if span.name == f"{name} (event)"]
    return mirrors[nth - 1]


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_attaching_after_the_2nd_event_over_jaeger_and_tempo_gives_the_history_once(
    fake: Any, use_provider: Callable[[Any], None], backend: str
) -> None:
    spans, run_id = five_step_job(use_provider)
    trace = TraceFrom(spans, _encoder(backend), first=_mirror_index(spans, "progress", 2) + 1)
    serve_trace(fake, backend, spans, trace)
    seen, failure = _followed(run_id, backend=backend, url=fake.url)
    assert failure is None
    assert trace.first_read is not None
    attached_at = [s for s in trace.first_read if s.name == "progress (event)"]
    assert len(attached_at) == 2  # it attached with 2 of the 5 events recorded
    assert trace.reads > 3 and trace.shown == len(spans)  # and followed the rest as it came
    assert [(e["event"], e["name"]) for e in seen] == [*expected_kinds(), ("on_chain_end", "job")]
    assert [e["data"]["step"] for e in seen if e["name"] == "progress"] == [1, 2, 3, 4, 5]
    assert [e["data"] for e in seen if e["name"] == "row"] == [
        {"step": s, "rows": s * 10} for s in range(1, 6)
    ]
    root = seen[0]
    assert root["run_id"] == run_id and root["parent_ids"] == [] and root["tags"] == ["nightly"]
    assert all(e["parent_ids"] == [run_id] for e in seen if e["name"] in ("transform", "row"))


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_a_failed_root_over_jaeger_and_tempo_ends_the_follow_with_its_error(
    fake: Any, use_provider: Callable[[Any], None], backend: str
) -> None:
    spans, run_id = five_step_job(use_provider, fail=True)
    trace = TraceFrom(spans, _encoder(backend), first=_mirror_index(spans, "progress", 2) + 1)
    serve_trace(fake, backend, spans, trace)
    seen, failure = _followed(run_id, backend=backend, url=fake.url)
    assert isinstance(failure, RunFailedError)
    assert (failure.run_id, failure.error_type, failure.error_message) == (run_id, "ValueError", "bad row 42")
    assert [(e["event"], e["name"]) for e in seen] == expected_kinds()  # no end for the failed root


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_a_killed_job_over_jaeger_and_tempo_ends_with_the_follow_timeout(
    fake: Any, use_provider: Callable[[Any], None], backend: str
) -> None:
    spans, run_id = five_step_job(use_provider)
    assert spans[-1].name == "job"  # the root's own span is exported last, when it ends
    # its process was killed before it ended: the trace never gets the root's span
    trace = TraceFrom(spans, _encoder(backend), first=1, last=len(spans) - 1)
    serve_trace(fake, backend, spans, trace)
    seen: list[dict[str, Any]] = []
    followed = otel_runnables.follow_sync(run_id, backend=backend, url=fake.url, interval=0.01, timeout=0.5)
    with pytest.raises(FollowTimeoutError) as raised:
        for event in followed:
            seen.append(event)
    assert trace.shown == len(spans) - 1  # everything it did was read before giving up
    assert [(e["event"], e["name"]) for e in seen] == expected_kinds()
    error = raised.value
    assert isinstance(error, TimeoutError) and error.status == "running" and error.timeout == 0.5
    text = str(error)
    assert f"run {run_id} has not ended" in text and f"{backend} at {fake.url}" in text
    assert "killed run never ends" in text
    assert not followed.finished

    async def follow_async() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async for event in otel_runnables.follow(
            run_id, backend=backend, url=fake.url, interval=0.01, timeout=0.5
        ):
            got.append(event)
        return got

    with pytest.raises(FollowTimeoutError, match=f"run {run_id} has not ended"):
        asyncio.run(follow_async())
    # giving up released the followers: their threads reading the backend stop
    wait_until(lambda: not any(t.name == "otel_runnables-follow-remote" for t in threading.enumerate()))


def test_a_quiet_job_alive_in_another_process_times_out_but_is_not_lost(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    run_id = str(new_run_id())
    worker, gate = start_worker(tmp_path, store, run_id, mode="hang", pause=0.01)
    gate.touch()
    wait_for_line(worker, "hanging")  # alive, and recording nothing more
    try:
        seen: list[dict[str, Any]] = []
        with pytest.raises(FollowTimeoutError) as raised:
            for event in otel_runnables.follow_sync(run_id, path=store, timeout=1.5):
                seen.append(event)
        assert [(e["event"], e["name"]) for e in seen] == expected_kinds()
        assert raised.value.status == "running" and "its process was still there" in str(raised.value)
        assert f"the store {store}" in str(raised.value)
    finally:
        worker.kill()
        worker.wait(60)


def test_timeout_must_be_positive(tmp_path: Path) -> None:
    for bad in (0, -1, "1", True):
        with pytest.raises(ValueError, match="timeout"):
            otel_runnables.follow_sync(str(new_run_id()), path=tmp_path / "traces.sqlite3", timeout=bad)
