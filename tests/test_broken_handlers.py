"""A broken handler never breaks or blocks the user's call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from otel_runnables import AsyncCallbackHandler, BaseCallbackHandler, RunnableLambda, adispatch_custom_event
from otel_runnables._dispatch import DEFAULT_HANDLER_TIMEOUT, handler_timeout


class Hangs(AsyncCallbackHandler):
    """Never finishes a callback on its own: only its timeout ends it."""

    timeout = 0.05

    def __init__(self) -> None:
        self.cut_off = 0

    async def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cut_off += 1
            raise


class Counts(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.calls = 0

    async def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.calls += 1


async def test_a_hanging_async_handler_is_cut_off(caplog: pytest.LogCaptureFixture) -> None:
    async def work(x: int) -> int:
        await adispatch_custom_event("e", x)
        await adispatch_custom_event("e", x)
        return x * 2

    counts, hangs = Counts(), Hangs()
    with caplog.at_level(logging.WARNING, logger="otel_runnables"):
        assert await RunnableLambda(work).ainvoke(4, {"callbacks": [hangs, counts]}) == 8
    assert hangs.cut_off == 2
    assert counts.calls == 2
    assert sum("did not finish within 0.05 s" in r.getMessage() for r in caplog.records) == 2


def test_a_hanging_async_handler_in_sync_code_is_cut_off() -> None:
    from otel_runnables import dispatch_custom_event

    def work(x: int) -> int:
        dispatch_custom_event("e", x)
        return x

    hangs = Hangs()
    assert RunnableLambda(work).invoke(3, {"callbacks": [hangs]}) == 3
    assert hangs.cut_off == 1


def test_a_raising_handler_keeps_the_result_and_the_exception(caplog: pytest.LogCaptureFixture) -> None:
    class Raises(BaseCallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            raise RuntimeError("handler bug")

        def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
            raise RuntimeError("handler bug")

    class UserError(Exception):
        pass

    def fails(x: int) -> int:
        raise UserError("the user's own error")

    with caplog.at_level(logging.WARNING, logger="otel_runnables"):
        assert RunnableLambda(lambda x: x).invoke(1, {"callbacks": [Raises()]}) == 1
        with pytest.raises(UserError, match="the user's own error"):
            RunnableLambda(fails).invoke(1, {"callbacks": [Raises()]})
    assert any("handler bug" in r.getMessage() for r in caplog.records)


def test_timeout_settings(setenv: Callable[[str, str], None]) -> None:
    plain = BaseCallbackHandler()
    assert handler_timeout(plain) == DEFAULT_HANDLER_TIMEOUT
    setenv("OTEL_RUNNABLES_HANDLER_TIMEOUT", "2.5")
    assert handler_timeout(plain) == 2.5
    setenv("OTEL_RUNNABLES_HANDLER_TIMEOUT", "none")
    assert handler_timeout(plain) is None
    assert handler_timeout(Hangs()) == 0.05


async def test_cancelled_runs_end_with_error_status_and_leave_nothing_live() -> None:
    from opentelemetry.trace import StatusCode

    from tests.conftest import EXPORTER

    EXPORTER.clear()
    started = asyncio.Event()

    async def slow(x: int) -> int:
        started.set()
        await asyncio.Event().wait()
        return x

    inner = RunnableLambda(slow)

    async def outer(x: int) -> int:
        return await inner.ainvoke(x)

    task = asyncio.create_task(RunnableLambda(outer).ainvoke(1))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(inner.ainvoke(2), 0.01)
    spans = EXPORTER.get_finished_spans()
    assert [s.name for s in spans] == ["slow", "outer", "slow"]
    assert all(s.status.status_code == StatusCode.ERROR for s in spans)
    assert "CancelledError" in (spans[0].status.description or "")


def test_a_stream_abandoned_half_way_ends_its_run() -> None:
    import gc

    from otel_runnables import _bridge as bridge

    def numbers(x: int) -> Any:
        yield from range(x)

    stream = RunnableLambda(numbers).stream(10)
    assert next(stream) == 0
    assert len(bridge._live) == 1
    del stream
    gc.collect()
    assert not bridge._live


class SuspendsThenRaises(AsyncCallbackHandler):
    """Suspends several times inside its timeout, sees values sent back in, then fails."""

    raise_error = True
    timeout = 5

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        self.seen.append(await asyncio.get_running_loop().run_in_executor(None, lambda: data * 2))
        raise LookupError(f"handler saw {data}")


async def test_an_async_handler_that_suspends_is_driven_to_its_end() -> None:
    async def work(x: int) -> int:
        await adispatch_custom_event("e", x)
        return x

    handler = SuspendsThenRaises()
    with pytest.raises(LookupError, match="handler saw 21"):
        await RunnableLambda(work).ainvoke(21, {"callbacks": [handler]})
    assert handler.seen == [42]


async def test_cancelling_the_run_reaches_a_suspended_async_handler() -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    class Waits(AsyncCallbackHandler):
        async def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    async def work(x: int) -> int:
        await adispatch_custom_event("e", x)
        return x

    task = asyncio.ensure_future(RunnableLambda(work).ainvoke(1, {"callbacks": [Waits()]}))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
