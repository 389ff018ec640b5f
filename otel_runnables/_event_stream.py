"""`astream_events(version="v2")`: a runnable's subtree events, from the run bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from otel_runnables._bridge import END, EventFilter, Subscription, subscribe_subtree, unsubscribe
from otel_runnables._config import RunnableConfig, RunScope, current_child_config
from otel_runnables._runs import new_run_id, run_id_text
from otel_runnables._sentinel import MISSING

if TYPE_CHECKING:
    from otel_runnables._runnables.base import Runnable

__all__ = ["stream_events"]

# the roots of the astream_events streams running now, by run id text
_streamed_roots: set[str] = set()


def _inside_a_stream(config: Any) -> bool:
    """Whether a run started with ``config`` is already covered by another astream_events."""
    if not _streamed_roots:
        return False
    scope = config.get("callbacks") if isinstance(config, dict) else None
    if scope is None:  # ensure_config's rule: the config's own callbacks, else the context's
        inherited = current_child_config()
        scope = None if inherited is None else inherited.get("callbacks")
    parent = scope.parent if isinstance(scope, RunScope) else None
    while parent is not None:
        if parent.id_text in _streamed_roots:
            return True
        parent = parent.parent
    return False


async def stream_events(
    runnable: Runnable[Any, Any],
    value: Any,
    config: RunnableConfig | None,
    event_filter: EventFilter,
    **kwargs: Any,
) -> AsyncIterator[dict[str, Any]]:
    """Run ``runnable.astream(value, config)`` and yield its subtree's v2 events."""
    # the config only gets the root's run id here: the run completes it from the
    # context once (ensure_config twice cost 33k instructions, 3.5 % of a stream),
    # and raises for an invalid one, which then ends the stream
    given = config.get("run_id") if isinstance(config, dict) else None
    root_id = given or new_run_id()
    if config is None or isinstance(config, dict):
        config = {**(config or {}), "run_id": root_id}
    root_key = run_id_text(root_id)
    # unbounded: the consumer of astream_events drives the run it streams. A
    # stream inside another one gets the chunks of its own root only: as with
    # langchain_core, where the outer stream's handler comes first and is the
    # one every streamed run inside reports its chunks to
    subscription = Subscription(
        root_id=root_id,
        root_key=root_key,
        event_filter=event_filter,
        sees_root_parent=True,
        own_chunks_only=_inside_a_stream(config),
    )
    subscribe_subtree(subscription)
    _streamed_roots.add(root_key)
    reader = subscription.reader
    assert reader is not None

    async def produce() -> None:
        try:
            async with contextlib.aclosing(runnable.astream(value, config, **kwargs)) as stream:  # type: ignore[type-var]
                async for _ in stream:
                    pass
        finally:
            subscription.finish()

    task = asyncio.create_task(produce())
    first_run_id: str | None = None
    first_sent = False
    try:
        while True:
            entry = reader.poll()  # usually waiting already: no await, no loop turn
            if entry is MISSING:
                entry = await reader.wait()
            if entry is END:
                break
            event = subscription.render(entry)
            if event is None:
                continue
            if not first_sent:
                first_sent = True
                first_run_id = event["run_id"]
                # root-style payloads for the first event; a custom event's
                # data is the user's own object and is never touched
                if event["event"] != "on_custom_event":
                    event["data"]["input"] = value
            elif (
                event["run_id"] == first_run_id
                and event["event"].endswith("_end")
                and "input" in event["data"]
            ):
                del event["data"]["input"]
            yield event
        await task  # re-raises the run's exception, after the events before it
    except asyncio.CancelledError as exc:
        task.cancel(exc.args[0] if exc.args else None)
        raise
    finally:
        _streamed_roots.discard(root_key)
        unsubscribe(subscription)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
