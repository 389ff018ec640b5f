"""Cancellation, interrupts, closed streams, interpreter shutdown and forks:
every span ends with the right status, nothing stays live, nothing queued is lost."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.trace import StatusCode

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _bridge as bridge
from otel_runnables._store import LocalStore
from tests.child_process import clean_environment, run_code
from tests.conftest import GetSpans


def test_keyboard_interrupt_inside_a_run(spans: GetSpans) -> None:
    def interrupted(x: int) -> int:
        raise KeyboardInterrupt

    outer = RunnableLambda(lambda x: RunnableLambda(interrupted).invoke(x))
    with pytest.raises(KeyboardInterrupt):
        outer.invoke(1)
    found = spans()
    assert len(found) == 2
    assert all(span.status.status_code == StatusCode.ERROR for span in found)
    assert all("KeyboardInterrupt" in (span.status.description or "") for span in found)
    assert not bridge._live


def test_closing_a_stream_half_way_ends_every_run(spans: GetSpans) -> None:
    def numbers(x: int) -> Iterator[int]:
        dispatch_custom_event("progress", {"step": 1})
        yield from range(x)

    stream = (RunnableLambda(lambda x: x) | RunnableLambda(numbers)).stream(10)
    assert next(stream) == 0
    stream.close()  # type: ignore[attr-defined]
    found = spans()
    assert len(found) == 3 and not bridge._live
    assert all(span.end_time is not None for span in found)


async def test_closing_an_async_stream_half_way_ends_every_run(spans: GetSpans) -> None:
    async def numbers(x: int) -> AsyncIterator[int]:
        for i in range(x):
            yield i

    stream = RunnableLambda(numbers).astream(10)
    assert await stream.__anext__() == 0
    await stream.aclose()  # type: ignore[attr-defined]
    (span,) = spans()
    assert span.end_time is not None and not bridge._live


async def test_a_timeout_mid_event_ends_the_run_as_an_error(spans: GetSpans) -> None:
    async def slow(x: int) -> int:
        from otel_runnables import adispatch_custom_event

        await adispatch_custom_event("progress", {"step": 1})
        await asyncio.sleep(10)
        return x

    with pytest.raises((TimeoutError, asyncio.TimeoutError)):  # distinct classes on 3.10
        await asyncio.wait_for(RunnableLambda(slow).ainvoke(1), 0.05)
    (span,) = spans()
    assert span.status.status_code == StatusCode.ERROR
    assert [event.name for event in span.events][:1] == ["progress"]
    assert not bridge._live


def run_script(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_code(code, clean_environment(**env))


def test_interpreter_shutdown_with_a_run_still_live(tmp_path: Path) -> None:
    """A daemon thread's run never ends: at exit the store marks it, and the runs
    queued for export are flushed."""
    store = tmp_path / "traces.sqlite3"
    done = run_script(
        """
        import threading, time
        import otel_runnables
        from otel_runnables import RunnableLambda, dispatch_custom_event
        otel_runnables.configure(exporters=["console"], set_global=False)
        started = threading.Event()
        def forever(x):
            dispatch_custom_event("progress", {"step": 1})
            started.set()
            time.sleep(3600)
        threading.Thread(target=RunnableLambda(forever).invoke, args=(1,), daemon=True).start()
        started.wait()
        for i in range(20):
            RunnableLambda(lambda x: x).invoke(i)
        """,
        OTEL_RUNNABLES_STORE=str(store),
        OTEL_BSP_SCHEDULE_DELAY="60000",  # nothing exported before exit but by the atexit flush
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count('"name": "RunnableLambda"') == 20
    (live,) = [r for r in LocalStore(store).recent_root_runs(50) if r.name == "forever"]
    assert live.end_ns is not None and live.status == "error"
    assert live.status_message == "process exited before the run ended"
    assert [event.name for event in live.events] == ["progress"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_keeps_exporting_without_duplicates(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    done = run_script(
        """
        import json, os, sys
        import otel_runnables
        from otel_runnables import RunnableLambda, dispatch_custom_event
        otel_runnables.configure(exporters=["console"], set_global=False)
        def work(x):
            dispatch_custom_event("progress", {"pid": os.getpid()})
            return x
        RunnableLambda(work).with_config(run_name="before-fork").invoke(1)
        pid = os.fork()
        if pid == 0:
            RunnableLambda(work).with_config(run_name="in-child").invoke(2)
            otel_runnables.shutdown()
            os._exit(0)
        os.waitpid(pid, 0)
        RunnableLambda(work).with_config(run_name="in-parent").invoke(3)
        """,
        OTEL_RUNNABLES_STORE=str(store),
        OTEL_BSP_SCHEDULE_DELAY="60000",
    )
    assert done.returncode == 0, done.stderr
    decoder, names, index = json.JSONDecoder(), [], 0
    while (start := done.stdout.find("{", index)) != -1:
        value, index = decoder.raw_decode(done.stdout, start)
        names.append(value["name"])
    assert sorted(names) == ["before-fork", "in-child", "in-parent"]  # each exported once
    stored = sorted(record.name for record in LocalStore(store).recent_root_runs(10))
    assert stored == ["before-fork", "in-child", "in-parent"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_child_forked_while_threads_hold_the_library_locks_gets_them_free() -> None:
    """Every module-level lock of the package, held by another thread as the process
    forks: the child can take each one (held, it would wait forever, as no thread of
    the child would ever let go)."""
    done = run_script(
        """
        import importlib, os, pkgutil, sys, threading
        import otel_runnables
        from otel_runnables._store import schema
        lock_types = (type(threading.Lock()), type(threading.RLock()))
        locks = {}
        for module_info in pkgutil.walk_packages(otel_runnables.__path__, "otel_runnables."):
            module = importlib.import_module(module_info.name)
            for name, value in vars(module).items():
                if isinstance(value, lock_types) and value is not schema._in_use:  # a fork waits for that one
                    locks[f"{module.__name__}.{name}"] = (module, name)
        holding, release = threading.Barrier(len(locks) + 1), threading.Event()
        def hold(lock):
            with lock:
                holding.wait()
                release.wait()
        for module, name in locks.values():
            threading.Thread(target=hold, args=(getattr(module, name),), daemon=True).start()
        holding.wait()
        pid = os.fork()
        if pid == 0:
            stuck = [key for key, (module, name) in locks.items()
                     if not getattr(module, name).acquire(timeout=2)]
            print("locks:", len(locks), "stuck in the child:", stuck, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        release.set()
        """,
        OTEL_RUNNABLES_STORE="none",
    )
    assert done.returncode == 0, done.stderr
    assert "stuck in the child: []" in done.stdout, done.stdout + done.stderr
    assert int(done.stdout.split("locks:")[1].split()[0]) >= 8, done.stdout
