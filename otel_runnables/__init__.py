"""otel_runnables: LangChain-style runnables whose every run is an
OpenTelemetry span, and whose custom events are span events.

    from otel_runnables import RunnableLambda, dispatch_custom_event

    @RunnableLambda
    def work(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1, "total": 1})
        return x

    work.invoke(1, {"callbacks": [handler], "tags": ["demo"]})
"""

from typing import TYPE_CHECKING, Any

from otel_runnables import _liveness  # noqa: F401  listens to the run bus from its import on
from otel_runnables._carry import carry_run
from otel_runnables._config import RunnableConfig, ensure_config
from otel_runnables._current import RunInfo, current_run
from otel_runnables._errors import (
    FollowTimeoutError,
    InvalidConfigError,
    InvalidEventError,
    OtelRunnablesError,
    RunFailedError,
    RunLostError,
    RunNotFoundError,
)
from otel_runnables._events import adispatch_custom_event, dispatch_custom_event
from otel_runnables._instrumentation import InstrumentationError, instrument, traceable, uninstrument
from otel_runnables._runnables import (
    Runnable,
    RunnableBinding,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    RunnableSequence,
    chain,
)
from otel_runnables._runnables.base import load_integrations_on_import
from otel_runnables._subscriptions import subscribe, subscribe_sync
from otel_runnables._telemetry import ConfigurationError, configure, force_flush, shutdown
from otel_runnables._version import __version__
from otel_runnables.callbacks import AsyncCallbackHandler, BaseCallbackHandler

__all__ = [
    "AsyncCallbackHandler",
    "BaseCallbackHandler",
    "ConfigurationError",
    "FollowTimeoutError",
    "InstrumentationError",
    "InvalidConfigError",
    "InvalidEventError",
    "OtelRunnablesError",
    "Runnable",
    "RunFailedError",
    "RunLostError",
    "RunInfo",
    "RunNotFoundError",
    "RunnableBinding",
    "RunnableConfig",
    "RunnableLambda",
    "RunnableParallel",
    "RunnablePassthrough",
    "RunnableSequence",
    "__version__",
    "adispatch_custom_event",
    "carry_run",
    "chain",
    "configure",
    "current_run",
    "dispatch_custom_event",
    "ensure_config",
    "follow",
    "follow_sync",
    "force_flush",
    "instrument",
    "shutdown",
    "subscribe",
    "subscribe_sync",
    "traceable",
    "uninstrument",
]


if TYPE_CHECKING:
    from otel_runnables.progress.follow import follow, follow_sync

# our runnables compose with LangChain's from both sides once both are imported, in any order
load_integrations_on_import()


def __getattr__(name: str) -> Any:
    # follow() reads records (sqlite3, HTTP): imported on first use, not with every run
    if name in ("follow", "follow_sync"):
        import importlib

        return getattr(importlib.import_module("otel_runnables.progress.follow"), name)
    raise AttributeError(f"module 'otel_runnables' has no attribute {name!r}")
