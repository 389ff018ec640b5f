"""`dispatch_custom_event` / `adispatch_custom_event`: user events inside a run.

The event belongs to the run whose code is executing (the innermost one),
found through the context on every Python version, or to the run of an
explicitly passed config. It becomes a span event on that run's span and
reaches the run's callback handlers with the very object dispatched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otel_runnables import _bridge as bridge
from otel_runnables._config import RunnableConfig, RunScope, add_tags, current_child_config, ensure_config
from otel_runnables._dispatch import listening
from otel_runnables._errors import InvalidEventError
from otel_runnables._runs import Run
from otel_runnables.callbacks import BaseCallbackHandler

__all__ = ["adispatch_custom_event", "dispatch_custom_event"]

# langchain_core's exact wording (missing spaces included), for drop-in parity
NO_RUN_MESSAGE = (
    "Unable to dispatch an adhoc event without a parent run id."
    "This function can only be called from within an existing run (e.g.,"
    "inside a tool or a RunnableLambda or a RunnableGenerator.)"
    "If you are doing that and still seeing this error, try explicitly"
    "passing the config parameter to this function."
)


_Told = tuple[Run, list[str], dict[str, Any], Sequence[BaseCallbackHandler], tuple[int, int] | None]


def _record(name: object, data: Any, config: RunnableConfig | None) -> _Told | None:
    """Write the event on its run's span; then what the run's handlers and the
    bridge are told (run, tags, metadata, the handlers that hear it, the
    event's recorded timestamp and number), or None when nobody listens."""
    if not isinstance(name, str):
        raise InvalidEventError(f"custom event name must be a str, got {type(name).__name__}")
    if not name:
        raise InvalidEventError("custom event name must not be empty")
    effective = current_child_config() if config is None else ensure_config(config)
    scope = None if effective is None else effective.get("callbacks")
    if not isinstance(scope, RunScope) or scope.parent is None:
        raise RuntimeError(NO_RUN_MESSAGE)
    assert effective is not None
    run = scope.parent
    recorded_at = run.record_custom_event(name, data)
    hearing = listening(scope.handlers, "on_custom_event") if scope.handlers else ()
    if not hearing and not bridge.has_listeners():
        return None
    tags, metadata = _scope_tags_and_metadata(effective, scope)
    return run, tags, metadata, hearing, recorded_at


def _scope_tags_and_metadata(config: RunnableConfig, scope: RunScope) -> tuple[list[str], dict[str, Any]]:
    # the dispatching scope's tags: inheritable ones, never the run's local step tag
    tags = list(scope.tags)
    config_tags = config.get("tags")
    if config_tags:
        add_tags(tags, config_tags)
    metadata = dict(scope.metadata)
    config_metadata = config.get("metadata")
    if config_metadata:
        metadata.update(config_metadata)
    return tags, metadata


def dispatch_custom_event(name: str, data: Any, *, config: RunnableConfig | None = None) -> None:
    """Emit a custom event from sync code running inside a run.

    Raises RuntimeError (as langchain_core does) when no run is in progress, and
    InvalidEventError when ``name`` is empty or not a str.
    """
    told = _record(name, data, config)
    if told is not None:
        run, tags, metadata, hearing, recorded_at = told
        bridge.custom_event(run, name, data, tags, metadata, hearing, recorded_at)


async def adispatch_custom_event(name: str, data: Any, *, config: RunnableConfig | None = None) -> None:
    """Emit a custom event from async code running inside a run."""
    told = _record(name, data, config)
    if told is not None:
        run, tags, metadata, hearing, recorded_at = told
        await bridge.acustom_event(run, name, data, tags, metadata, hearing, recorded_at)
