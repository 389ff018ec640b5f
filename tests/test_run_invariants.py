"""Invariants over generated programs and under concurrency: every start has
exactly one end or error, children end before their parents return (a
parallel map that fails under ainvoke leaves its other branches running, as
langchain_core does: they end on their own, after it), custom events sit
inside their own run, and nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan

from otel_runnables import (
    BaseCallbackHandler,
    Runnable,
    RunnableLambda,
    RunnableParallel,
    adispatch_custom_event,
    dispatch_custom_event,
    subscribe,
)
from tests.conftest import GetSpans, run_spans


class Journal(BaseCallbackHandler):
    """Records the lifecycle in callback order, thread-safely."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any, Any]] = []
        self._lock = threading.Lock()

    def _add(self, kind: str, run_id: Any, parent: Any) -> None:
        with self._lock:
            self.entries.append((kind, run_id, parent))

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self._add("start", kwargs["run_id"], kwargs["parent_run_id"])

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self._add("end", kwargs["run_id"], kwargs["parent_run_id"])

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self._add("error", kwargs["run_id"], kwargs["parent_run_id"])

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self._add("event", kwargs["run_id"], None)


def check_lifecycle(entries: list[tuple[str, Any, Any]]) -> None:
    started: dict[Any, Any] = {}
    finished: set[Any] = set()
    for kind, run_id, parent in entries:
        if kind == "start":
            assert run_id not in started, "a run started twice"
            assert parent is None or (parent in started and parent not in finished), "orphan start"
            started[run_id] = parent
        elif kind in ("end", "error"):
            assert run_id in started and run_id not in finished, "end without start, or ended twice"
            if kind == "end":
                assert all(p != run_id or c in finished for c, p in started.items()), "parent ended first"
            finished.add(run_id)
        else:
            assert run_id in started and run_id not in finished, "event outside its run"
    assert finished == set(started), "a run never ended"


def checked_run_spans(found: list[ReadableSpan]) -> list[ReadableSpan]:
    """The runs' own spans. A run still going after the liveness delay (1 s) also
    announces itself with a pending span and event mirrors, which a slow machine
    under this load produces; each of those must hang off one of the runs."""
    runs = run_spans(found)
    run_ids = {s.context.span_id for s in runs}
    for extra in found:
        if extra.context.span_id not in run_ids:
            assert extra.parent is not None and extra.parent.span_id in run_ids, (
                f"{extra.name} hangs off no run"
            )
    return runs


class Boom(Exception):
    pass


def build(spec: Any) -> Runnable[Any, Any]:
    """A runnable from a generated spec: leaves, sequences, maps and nests."""
    kind = spec[0]
    if kind == "leaf":
        events, fails = spec[1], spec[2]

        def leaf(x: int) -> int:
            for step in range(events):
                dispatch_custom_event("progress", {"step": step})
            if fails:
                raise Boom("leaf failed")
            return x + 1 if isinstance(x, int) else 0

        return RunnableLambda(leaf)
    if kind == "seq":
        first, *rest = [build(s) for s in spec[1]]
        return first.pipe(*rest)
    if kind == "map":
        return RunnableParallel({f"k{i}": build(s) for i, s in enumerate(spec[1])})
    child = build(spec[1])
    return RunnableLambda(lambda x: child.invoke(x))


specs = st.recursive(
    st.tuples(st.just("leaf"), st.integers(0, 3), st.booleans()),
    lambda inner: (
        st.tuples(st.just("seq"), st.lists(inner, min_size=2, max_size=3))
        | st.tuples(st.just("map"), st.lists(inner, min_size=1, max_size=3))
        | st.tuples(st.just("nest"), inner)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(specs)
def test_generated_programs_keep_the_lifecycle_invariants(spec: Any) -> None:
    journal = Journal()
    with contextlib.suppress(Boom):
        build(spec).invoke(0, {"callbacks": [journal]})
    check_lifecycle(journal.entries)


@settings(max_examples=100, deadline=None)
@given(specs)
def test_generated_programs_keep_the_lifecycle_invariants_async(spec: Any) -> None:
    journal = Journal()

    async def main() -> None:
        with contextlib.suppress(Boom):
            await build(spec).ainvoke(0, {"callbacks": [journal]})
        # branches a failed map left running end on their own
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)

    asyncio.run(main())
    check_lifecycle(journal.entries)


async def test_a_thousand_concurrent_async_runs(spans: GetSpans) -> None:
    journal = Journal()

    async def job(n: int) -> int:
        for step in range(3):
            await adispatch_custom_event("progress", {"job": n, "step": step})
            await asyncio.sleep(0)
        return await RunnableLambda(lambda x: x, name="child").ainvoke(n)

    runnable = RunnableLambda(job)
    results = await asyncio.gather(*(runnable.ainvoke(n, {"callbacks": [journal]}) for n in range(1000)))
    assert results == list(range(1000))
    check_lifecycle(journal.entries)
    assert sum(1 for kind, _, _ in journal.entries if kind == "event") == 3000
    found = checked_run_spans(spans())
    jobs = {s.context.span_id: s for s in found if s.name == "job"}
    assert len(jobs) == 1000
    for span in jobs.values():
        job_numbers = {dict(e.attributes or {})["otel_runnables.event.data.job"] for e in span.events}
        assert len(job_numbers) == 1 and len(span.events) == 3
    children = [s for s in found if s.name == "child"]
    assert len(children) == 1000
    assert all(s.parent is not None and s.parent.span_id in jobs for s in children)
    for child in children:
        parent = jobs[child.parent.span_id]  # type: ignore[union-attr]
        assert dict(child.attributes or {})["input.value"] == str(
            dict(parent.events[0].attributes or {})["otel_runnables.event.data.job"]
        )


def test_thirty_two_threads_each_dispatching(spans: GetSpans) -> None:
    journal = Journal()

    def job(n: int) -> int:
        for step in range(5):
            dispatch_custom_event("progress", {"job": n, "step": step})
        return n

    runnable = RunnableLambda(job)
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda n: runnable.invoke(n, {"callbacks": [journal]}), range(320)))
    assert results == list(range(320))
    check_lifecycle(journal.entries)
    found = checked_run_spans(spans())
    assert len(found) == 320
    for span in found:
        assert len({dict(e.attributes or {})["otel_runnables.event.data.job"] for e in span.events}) == 1
        assert len(span.events) == 5


async def test_subscribers_of_concurrent_runs_see_only_their_own_subtree() -> None:
    gate = asyncio.Event()
    ids: dict[int, Any] = {}

    class Ids(BaseCallbackHandler):
        def __init__(self, n: int) -> None:
            self.n = n

        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            if kwargs["parent_run_id"] is None:
                ids[self.n] = kwargs["run_id"]

    async def job(n: int) -> int:
        await gate.wait()
        for _ in range(4):
            await adispatch_custom_event("progress", {"job": n})
        return n

    runnable = RunnableLambda(job)
    tasks = [asyncio.create_task(runnable.ainvoke(n, {"callbacks": [Ids(n)]})) for n in range(50)]
    while len(ids) < 50:
        await asyncio.sleep(0)
    streams = {n: subscribe(ids[n]) for n in range(50)}

    async def collect(n: int) -> list[Any]:
        return [e async for e in streams[n]]

    collectors = [asyncio.create_task(collect(n)) for n in range(50)]
    gate.set()
    await asyncio.gather(*tasks)
    for n, seen in enumerate(await asyncio.gather(*collectors)):
        custom = [e for e in seen if e["event"] == "on_custom_event"]
        assert len(custom) == 4 and all(e["data"] == {"job": n} for e in custom)
        assert seen[-1]["event"] == "on_chain_end" and seen[-1]["data"]["output"] == n


def test_run_ids_are_uuid7_unique_and_ordered_by_time() -> None:
    import uuid

    from otel_runnables._runs import new_run_id

    before = time.time_ns() // 1_000_000
    ids = [new_run_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    for run_id in ids[::1_000]:
        assert (run_id.version, run_id.variant) == (7, uuid.RFC_4122)
        assert uuid.UUID(str(run_id)) == run_id and hash(uuid.UUID(int=run_id.int)) == hash(run_id)
    # the variant's two free bits are random too
    assert {str(run_id)[19] for run_id in ids[:2_000]} == set("89ab")
    # the millisecond timestamp leads, as UUIDv7 specifies, and follows the clock
    assert ids[0].int >> 80 >= before
    time.sleep(0.002)  # the next millisecond
    assert new_run_id() > ids[-1] and new_run_id().int >> 80 >= before + 2


def test_a_given_run_id_is_kept_and_others_are_uuid7() -> None:
    import uuid

    import otel_runnables as ours

    given = uuid.uuid4()
    seen: list[uuid.UUID] = []

    class Recorder(ours.BaseCallbackHandler):
        def on_chain_start(self, *args: object, run_id: uuid.UUID, **kwargs: object) -> None:
            seen.append(run_id)

    ours.RunnableLambda(lambda x: x).invoke(1, {"run_id": given, "callbacks": [Recorder()]})
    ours.RunnableLambda(lambda x: x).invoke(1, {"callbacks": [Recorder()]})
    assert seen[0] is given
    assert isinstance(seen[1], uuid.UUID) and seen[1].version == 7
