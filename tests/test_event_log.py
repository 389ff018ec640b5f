"""The bus's shared event log: every reader its own cursor, order kept across
threads, a bounded backlog per reader with exact drop counts, nothing for the
publisher to wait on."""

from __future__ import annotations

import asyncio
import threading

import pytest

from otel_runnables._event_log import END, EventLog, LogReader
from otel_runnables._sentinel import MISSING


def entry(number: int) -> tuple[object, ...]:
    return ("custom", None, number, None)


def log() -> EventLog:
    return EventLog(None, ends_with_root=True, shared=True)


async def test_order_wake_and_a_cancelled_wait() -> None:
    events = log()
    reader = LogReader(events, 0)
    assert reader.poll() is MISSING
    waiting = asyncio.ensure_future(reader.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    events.append(entry(1))
    events.append(entry(2))
    assert await waiting == entry(1)
    assert reader.poll() == entry(2) and reader.poll() is MISSING

    cancelled = asyncio.ensure_future(reader.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    events.append(entry(3))  # kept for the next read
    assert await asyncio.wait_for(reader.get(), 1) == entry(3)
    events.close()
    assert await reader.get() is END


async def test_readers_share_the_log_with_their_own_cursors() -> None:
    events = log()
    early = LogReader(events, 0)
    events.append(entry(1))
    late = LogReader(events, 0)  # sees what comes after it joined
    events.append(entry(2))
    events.close()
    assert [early.poll(), early.poll(), early.poll()] == [entry(1), entry(2), END]
    assert [late.poll(), late.poll()] == [entry(2), END]


def test_a_reader_past_its_bound_skips_the_oldest_and_counts_them_exactly() -> None:
    events = log()
    slow = LogReader(events, 3)
    patient = LogReader(events, 0)
    for number in range(1000):
        events.append(entry(number))
    assert slow.dropped == 997
    assert [slow.poll()[2] for _ in range(3)] == [997, 998, 999]
    assert slow.poll() is MISSING and slow.dropped == 997
    # an unbounded reader keeps everything
    assert [patient.poll()[2] for _ in range(1000)] == list(range(1000))


def test_a_bounded_log_keeps_no_more_than_its_readers_can_read() -> None:
    events = log()
    reader = LogReader(events, 10)
    for number in range(10_000):
        events.append(entry(number))
    assert len(events._entries) <= 10 + 64
    del reader  # garbage-collected: nothing is kept for it any more
    for number in range(200):
        events.append(entry(number))
    assert len(events._entries) <= 64


def test_entries_from_other_threads_keep_their_order_before_the_end() -> None:
    events = log()
    reader = LogReader(events, 0)

    def publish(start: int) -> None:
        for number in range(start, start + 500):
            events.append(entry(number))

    threads = [threading.Thread(target=publish, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events.close()  # after every append: the reader sees all 2,000 first
    seen = []
    while (item := reader.get_sync(5)) is not END:
        seen.append(item[2])
    assert len(seen) == 2000
    for n in range(4):
        mine = [number for number in seen if n * 1000 <= number < n * 1000 + 500]
        assert mine == sorted(mine) and len(mine) == 500


async def test_a_waiting_async_reader_is_woken_from_another_thread() -> None:
    events = log()
    reader = LogReader(events, 0)
    waiting = asyncio.ensure_future(reader.get())
    await asyncio.sleep(0)
    threading.Thread(target=events.append, args=(entry(7),)).start()
    assert await asyncio.wait_for(waiting, 5) == entry(7)


def test_a_sync_reader_waits_at_most_its_timeout() -> None:
    events = log()
    reader = LogReader(events, 0)
    assert reader.get_sync(0.01) is MISSING
    threading.Timer(0.05, events.append, args=(entry(1),)).start()
    assert reader.get_sync(5) == entry(1)
