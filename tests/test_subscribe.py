"""Attaching to live runs: by run id and trace id, from tasks and threads,
isolated from other runs, never slowing the run down."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from otel_runnables import (
    BaseCallbackHandler,
    RunnableLambda,
    RunNotFoundError,
    adispatch_custom_event,
    dispatch_custom_event,
    subscribe,
    subscribe_sync,
)


class Started(BaseCallbackHandler):
    """Tells the test the run id and trace id as soon as the root starts."""

    def __init__(self) -> None:
        self.run_id: uuid.UUID | None = None
        self.ready = threading.Event()
        self.progress = 0

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self.progress += 1  # one step is done when its child run ends

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        if kwargs["parent_run_id"] is None:
            self.run_id = kwargs["run_id"]
            self.ready.set()


def gated_job(gates: list[asyncio.Event]) -> RunnableLambda:
    child = RunnableLambda(lambda x: x, name="child")

    async def job(x: int) -> int:
        for step, gate in enumerate(gates, start=1):
            await gate.wait()
            await adispatch_custom_event("progress", {"step": step, "total": len(gates)})
            await child.ainvoke(step)
        return x

    return RunnableLambda(job, name="job")


async def test_attach_mid_run_by_run_id_sees_the_rest() -> None:
    gates = [asyncio.Event() for _ in range(3)]
    started = Started()
    task = asyncio.create_task(gated_job(gates).ainvoke(7, {"callbacks": [started]}))
    await asyncio.sleep(0)
    assert started.run_id is not None
    gates[0].set()
    while started.progress < 1:  # step 1 happens before we attach
        await asyncio.sleep(0)
    events = subscribe(started.run_id)
    gates[1].set()
    gates[2].set()
    seen = [e async for e in events]
    assert await task == 7
    kinds = [(e["event"], e["name"]) for e in seen]
    assert kinds == [
        ("on_custom_event", "progress"),
        ("on_chain_start", "child"),
        ("on_chain_end", "child"),
        ("on_custom_event", "progress"),
        ("on_chain_start", "child"),
        ("on_chain_end", "child"),
        ("on_chain_end", "job"),
    ]
    assert [e["data"]["step"] for e in seen if e["event"] == "on_custom_event"] == [2, 3]
    root = str(started.run_id)
    assert all(e["parent_ids"] == ([] if e["name"] in ("job", "progress") else [root]) for e in seen)
    assert seen[-1]["data"] == {"output": 7, "input": 7}
    assert events.dropped == 0


async def test_attach_by_trace_id_and_isolation_from_other_runs() -> None:
    gates = [asyncio.Event()]
    other_gates = [asyncio.Event()]
    started, other_started = Started(), Started()
    task = asyncio.create_task(gated_job(gates).ainvoke(1, {"callbacks": [started]}))
    other = asyncio.create_task(gated_job(other_gates).ainvoke(2, {"callbacks": [other_started]}))
    await asyncio.sleep(0)
    from otel_runnables import _bridge as bridge

    assert started.run_id is not None
    run = bridge.live_run(started.run_id)
    assert run is not None
    trace_id = format(run.span.get_span_context().trace_id, "032x")
    async with subscribe(trace_id=trace_id) as events:
        other_gates[0].set()
        gates[0].set()
        seen = [e async for e in events]
    await asyncio.gather(task, other)
    assert {e["run_id"] for e in seen if e["name"] == "job"} == {str(started.run_id)}
    assert [e["event"] for e in seen][-1] == "on_chain_end"


async def test_a_reader_that_never_reads_does_not_block_the_run() -> None:
    gates = [asyncio.Event() for _ in range(5)]
    started = Started()
    task = asyncio.create_task(gated_job(gates).ainvoke(0, {"callbacks": [started]}))
    await asyncio.sleep(0)
    events = subscribe(started.run_id, max_buffer=2)
    for gate in gates:
        gate.set()
    assert await asyncio.wait_for(task, 5) == 0
    # 5 x (custom, child start, child end) + root end = 16 events, 2 kept
    assert events.dropped == 14
    kept = [e async for e in events]
    assert len(kept) == 2
    events.close()


def test_sync_subscription_from_a_thread() -> None:
    release = threading.Event()
    started = Started()

    def work(x: int) -> int:
        for step in (1, 2):
            release.wait(5)
            dispatch_custom_event("progress", {"step": step})
        return x

    worker = threading.Thread(target=RunnableLambda(work).invoke, args=(3, {"callbacks": [started]}))
    worker.start()
    assert started.ready.wait(5)
    with subscribe_sync(started.run_id, timeout=5) as events:
        release.set()
        seen = list(events)
    worker.join(5)
    assert [e["event"] for e in seen] == ["on_custom_event", "on_custom_event", "on_chain_end"]


async def test_unknown_ids_are_typed_errors_after_the_wait() -> None:
    from otel_runnables import _bridge as bridge

    with pytest.raises(RunNotFoundError, match=r"no run .* started within 0.05 s"):
        await anext(subscribe(uuid.uuid4(), wait=0.05))
    with pytest.raises(RunNotFoundError, match=r"no trace 0+1 started"):
        async with subscribe(trace_id="0" * 31 + "1", wait=0):
            pass
    with pytest.raises(RunNotFoundError, match="not a run id"):
        subscribe("nope")
    with pytest.raises(TypeError):
        subscribe()
    with pytest.raises(ValueError, match="since"):
        subscribe(uuid.uuid4(), since="later")
    with pytest.raises(ValueError, match="wait"):
        subscribe(uuid.uuid4(), wait=-1)
    with pytest.raises(RunNotFoundError, match="within"):
        next(subscribe_sync(uuid.uuid4(), wait=0))
    assert not bridge._by_run and not bridge._by_trace  # nothing left registered


async def test_subscribing_before_the_run_starts_waits_for_it() -> None:
    from otel_runnables._runs import new_run_id

    run_id = new_run_id()
    events = subscribe(run_id, wait=10)  # right after create_task: not started yet
    task = asyncio.create_task(gated_job([]).ainvoke(5, {"run_id": run_id}))
    seen = [e async for e in events]
    assert await task == 5
    assert [(e["event"], e["name"]) for e in seen] == [("on_chain_start", "job"), ("on_chain_end", "job")]
    assert seen[0]["run_id"] == str(run_id)


def test_a_failed_run_ends_the_subscription_and_keeps_its_error() -> None:
    from otel_runnables._runs import new_run_id

    run_id = new_run_id()
    events = subscribe_sync(run_id, wait=10)

    def fail(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1})
        raise KeyError("missing row")

    with pytest.raises(KeyError):
        RunnableLambda(fail).invoke(1, {"run_id": run_id})
    seen = list(events)
    assert [e["event"] for e in seen] == ["on_chain_start", "on_custom_event"]
    assert isinstance(events.error, KeyError)


def test_subscribe_outside_an_event_loop_points_to_the_sync_form() -> None:
    with pytest.raises(RuntimeError, match="subscribe_sync"):
        subscribe(uuid.uuid4())


def test_abandoned_subscriptions_are_released_when_the_run_ends_and_when_collected() -> None:
    import gc
    import tracemalloc

    from otel_runnables import _bridge as bridge

    release = threading.Event()
    started = Started()

    def work(x: int) -> int:
        release.wait(5)
        for step in range(500):
            dispatch_custom_event("progress", {"step": step, "blob": "x" * 200})
        return x

    worker = threading.Thread(target=RunnableLambda(work).invoke, args=(3, {"callbacks": [started]}))
    worker.start()
    assert started.ready.wait(5)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(200):
        subscribe_sync(started.run_id)  # dropped at once, never closed
    kept = [subscribe_sync(started.run_id) for _ in range(200)]  # kept, never read
    release.set()
    worker.join(5)
    gc.collect()
    # the run ended: nothing is registered for it any more
    assert not bridge._by_run and not bridge._by_trace
    held = tracemalloc.get_traced_memory()[0] - before
    # 200 unread readers share one log: about 500 events' worth, not 200 copies
    assert held < 2_000_000, held
    tracemalloc.stop()
    assert all(events.dropped == 0 for events in kept)
    assert len(list(kept[0])) == 501 and len(list(kept[-1])) == 501
    import weakref

    shared_log = weakref.ref(kept[1]._subscription.log)
    del kept
    gc.collect()
    assert shared_log() is None  # the last reader gone, the log and its entries go too


async def test_a_subscription_collected_while_its_run_goes_on_stops_costing_it() -> None:
    import gc

    from otel_runnables import _bridge as bridge

    gates = [asyncio.Event() for _ in range(2)]
    started = Started()
    task = asyncio.create_task(gated_job(gates).ainvoke(0, {"callbacks": [started]}))
    await asyncio.sleep(0)
    events = subscribe(started.run_id)
    assert bridge._by_run
    del events
    gc.collect()
    gates[0].set()
    gates[1].set()
    await task
    assert not bridge._by_run  # swept at the next event, at the latest when the run ended


def test_idle_subscribers_cost_the_run_no_event_dicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 subscribers that never read: the run builds no v2 dict for any of
    them (a reader builds each dict when it reads it), full buffers or not."""
    import collections

    from otel_runnables import _event_dicts as event_dicts

    built: collections.Counter[str] = collections.Counter()

    def counted(name: str) -> Any:
        build = getattr(event_dicts, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            built[name] += 1
            return build(*args, **kwargs)

        return counting

    for name in ("run_event", "custom_event", "start_data", "end_data"):
        monkeypatch.setattr(event_dicts, name, counted(name))

    def child(step: int) -> int:
        dispatch_custom_event("row", {"step": step})
        return step

    def job(steps: int) -> int:
        for step in range(steps):
            dispatch_custom_event("progress", {"step": step, "total": steps})
            RunnableLambda(child, name="child").invoke(step)
        return steps

    run_id = uuid.uuid4()
    # registered before the run starts, so every event of it reaches them; never read
    idle = [subscribe_sync(run_id, wait=10) for _ in range(500)]
    idle += [subscribe_sync(run_id, wait=10, max_buffer=5) for _ in range(400)]  # buffers that fill
    idle += [subscribe_sync(run_id, wait=10, include_names=["progress"]) for _ in range(100)]
    RunnableLambda(job, name="job").invoke(20, {"run_id": run_id})
    assert sum(built.values()) == 0, built  # 1,000 subscribers, 82 events: not one dict
    # what an idle subscriber holds is built when it is read, once per event read
    events = list(idle[0])
    assert len(events) == 1 + 20 * 4 + 1
    assert built["run_event"] + built["custom_event"] == len(events)
    assert idle[600].dropped > 0 and len(list(idle[600])) <= 6  # a full buffer skipped, counted
    for subscription in idle:
        subscription.close()
