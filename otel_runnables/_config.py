"""`RunnableConfig` and the rules for what a run hands down to its children.

A running run publishes its *child config* in the OpenTelemetry context, so a
child runnable, a helper calling `dispatch_custom_event`, a `batch` worker
thread or an asyncio task finds its parent without anyone passing `config`.
An explicit config wins over the context key by key, as in langchain_core.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from opentelemetry import context as otel_context
from opentelemetry import trace

from otel_runnables._errors import InvalidConfigError
from otel_runnables.callbacks import BaseCallbackHandler  # at run time: get_type_hints(RunnableConfig)

if TYPE_CHECKING:
    from otel_runnables._runs import Run

__all__ = [
    "DEFAULT_RECURSION_LIMIT",
    "CONFIG_KEYS",
    "Callbacks",
    "add_tags",
    "RunScope",
    "RunnableConfig",
    "current_child_config",
    "own_child_config",
    "register_foreign_context",
    "register_run_entry",
    "unregister_foreign_context",
    "unregister_run_entry",
    "ensure_config",
    "get_config_list",
    "merge_configs",
    "own_copy",
    "patch_config",
]

DEFAULT_RECURSION_LIMIT = 25


@dataclass(slots=True)
class RunScope:
    """What a child run inherits: its parent run, the inheritable handlers,
    tags and metadata. ``tags`` may hold one *local* tag (``seq:step:N``,
    ``map:key:K``) that ``inheritable_tags`` lacks, so it reaches the child
    run but nothing below it."""

    parent: Run | None
    handlers: list[BaseCallbackHandler]
    tags: list[str]
    inheritable_tags: list[str]
    metadata: dict[str, Any]

    @property
    def parent_run_id(self) -> uuid.UUID | None:
        return None if self.parent is None else self.parent.id

    def with_handlers(self, handlers: Sequence[BaseCallbackHandler]) -> RunScope:
        added = [h for h in handlers if h not in self.handlers]
        return RunScope(
            self.parent, [*self.handlers, *added], self.tags, self.inheritable_tags, self.metadata
        )


Callbacks = list[BaseCallbackHandler] | RunScope | None


class RunnableConfig(TypedDict, total=False):
    """Configuration of one call; every key is optional."""

    tags: list[str]
    metadata: dict[str, Any]
    callbacks: Callbacks
    run_name: str
    run_id: uuid.UUID | None
    max_concurrency: int | None
    recursion_limit: int
    configurable: dict[str, Any]


CONFIG_KEYS = frozenset(RunnableConfig.__annotations__)
_COPIED_KEYS = ("tags", "metadata", "configurable")
_CONFIGURABLE_AS_METADATA = ("model", "checkpoint_ns")

_CHILD_CONFIG = otel_context.create_key("otel_runnables.child_config")


ForeignContext = Callable[["RunnableConfig | None"], "RunnableConfig | None"]
"""Given our own child config in force (or None), the config to use instead
when another library's run is the innermost one here (else None)."""

_foreign_contexts: list[ForeignContext] = []


def register_foreign_context(source: ForeignContext) -> None:
    """Let an integration put its library's runs between ours (see
    integrations/langchain)."""
    if source not in _foreign_contexts:
        _foreign_contexts.append(source)


def unregister_foreign_context(source: ForeignContext) -> None:
    if source in _foreign_contexts:
        _foreign_contexts.remove(source)


RunEntry = Callable[["Run"], "Callable[[], None] | None"]
"""Called where a run's code starts or resumes executing (the run is current);
returns what undoes it where that code pauses or ends, or None."""

RUN_ENTRIES: list[RunEntry] = []
"""Registered run entries; empty unless an integration needs one (the check is one truth test)."""


def register_run_entry(entry: RunEntry) -> None:
    """Let an integration make its library's context follow our runs (see
    integrations/langchain: LangChain's own child config)."""
    if entry not in RUN_ENTRIES:
        RUN_ENTRIES.append(entry)


def unregister_run_entry(entry: RunEntry) -> None:
    if entry in RUN_ENTRIES:
        RUN_ENTRIES.remove(entry)


def own_child_config() -> RunnableConfig | None:
    """Our own child config in the context, ignoring other libraries' runs."""
    value = otel_context.get_value(_CHILD_CONFIG)
    return value  # type: ignore[return-value]


def current_child_config() -> RunnableConfig | None:
    """The child config of the run whose code is executing here, if any."""
    value: RunnableConfig | None = otel_context.get_value(_CHILD_CONFIG)  # type: ignore[assignment]
    for source in _foreign_contexts:
        foreign = source(value)
        if foreign is not None:
            return foreign
    return value


def context_with_child_config(config: RunnableConfig, span: trace.Span | None) -> otel_context.Context:
    """The current context with ``config`` as the child config, and ``span`` current
    (None: the current span stays, one context copy fewer)."""
    context = None if span is None else trace.set_span_in_context(span)
    return otel_context.set_value(_CHILD_CONFIG, config, context)


def add_tags(tags: list[str], new: list[str]) -> None:
    """Add ``new`` to ``tags``; a tag given again moves to the end (langchain_core)."""
    for tag in new:
        if tag in tags:
            tags.remove(tag)
    tags.extend(new)


def _validate(config: object) -> RunnableConfig:
    if not isinstance(config, dict):
        raise InvalidConfigError(f"config must be a dict (RunnableConfig), got {type(config).__name__}")
    tags = config.get("tags")
    if tags is not None and (
        not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags)
    ):
        raise InvalidConfigError(f"config['tags'] must be a list of str, got {tags!r}")
    metadata = config.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidConfigError(f"config['metadata'] must be a dict, got {type(metadata).__name__}")
    callbacks = config.get("callbacks")
    if callbacks is not None and not isinstance(callbacks, (list, tuple, RunScope)):
        raise InvalidConfigError(
            f"config['callbacks'] must be a list of callback handlers, got {type(callbacks).__name__}"
        )
    run_id = config.get("run_id")
    if run_id is not None and not isinstance(run_id, uuid.UUID):
        raise InvalidConfigError(f"config['run_id'] must be a uuid.UUID, got {type(run_id).__name__}")
    run_name = config.get("run_name")
    if run_name is not None and not isinstance(run_name, str):
        raise InvalidConfigError(f"config['run_name'] must be a str, got {type(run_name).__name__}")
    max_concurrency = config.get("max_concurrency")
    if max_concurrency is not None and (
        not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1
    ):
        raise InvalidConfigError(f"config['max_concurrency'] must be a positive int, got {max_concurrency!r}")
    limit = config.get("recursion_limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise InvalidConfigError(f"config['recursion_limit'] must be an int, got {limit!r}")
    configurable = config.get("configurable")
    if configurable is not None and not isinstance(configurable, dict):
        raise InvalidConfigError(f"config['configurable'] must be a dict, got {type(configurable).__name__}")
    return config  # type: ignore[return-value]


def ensure_config(config: RunnableConfig | None = None) -> RunnableConfig:
    """A complete config: defaults, overlaid by the context's child config,
    overlaid by the explicit ``config`` (keys with value None are ignored)."""
    ensured: dict[str, Any] = {
        "tags": [],
        "metadata": {},
        "callbacks": None,
        "recursion_limit": DEFAULT_RECURSION_LIMIT,
        "configurable": {},
    }
    inherited = current_child_config()
    if inherited is not None:
        for key, value in inherited.items():
            if value is not None:
                ensured[key] = value.copy() if key in _COPIED_KEYS else value  # type: ignore[attr-defined]
    if config is not None and config is not inherited:  # a step is handed the config it already runs in
        extra: dict[str, Any] = {}
        for key, value in _validate(config).items():
            if value is None:
                continue
            if key not in CONFIG_KEYS:
                extra[key] = value  # like langchain_core: unknown keys are configurable values
            elif isinstance(value, (list, tuple)):
                # copies: a function mutating its config must not change the caller's
                ensured[key] = list(value)
            elif key in _COPIED_KEYS:
                ensured[key] = dict(value)  # type: ignore[call-overload]
            else:
                ensured[key] = value
        if extra:
            ensured["configurable"] = {**ensured["configurable"], **extra}
    # like langchain_core: these configurable strings are visible as metadata
    configurable = ensured["configurable"]
    if configurable:
        for key in _CONFIGURABLE_AS_METADATA:
            value = configurable.get(key)
            if isinstance(value, str) and key not in ensured["metadata"]:
                ensured["metadata"] = {**ensured["metadata"], key: value}
    return ensured  # type: ignore[return-value]


def own_copy(config: RunnableConfig) -> RunnableConfig:
    """The config a function receives: its own copy (tags, metadata and
    configurable too), so what the function changes never reaches the children
    it calls without passing it, nor its custom events (as in langchain_core)."""
    copied: dict[str, Any] = dict(config)
    for key in _COPIED_KEYS:
        value = copied.get(key)
        if value is not None:
            copied[key] = value.copy()
    return copied  # type: ignore[return-value]


def patch_config(
    config: RunnableConfig,
    *,
    callbacks: Callbacks = None,
    recursion_limit: int | None = None,
    run_name: str | None = None,
) -> RunnableConfig:
    """A copy of ``config`` for a child: new callbacks drop ``run_id`` and
    ``run_name``, which belong to one run only."""
    patched: dict[str, Any] = dict(config)
    if callbacks is not None:
        patched["callbacks"] = callbacks
        patched.pop("run_id", None)
        patched.pop("run_name", None)
    if recursion_limit is not None:
        patched["recursion_limit"] = recursion_limit
    if run_name is not None:
        patched["run_name"] = run_name
    return patched  # type: ignore[return-value]


def _merge_callbacks(base: Callbacks, new: Callbacks) -> Callbacks:
    if new is None:
        return base
    if base is None:
        return new
    if isinstance(base, RunScope):
        return base.with_handlers(new) if isinstance(new, list) else new.with_handlers(base.handlers)
    if isinstance(new, RunScope):
        return new.with_handlers(base)
    return [*base, *new]


def merge_configs(*configs: RunnableConfig | None) -> RunnableConfig:
    """langchain_core's merge: tags become a sorted set, metadata and
    configurable later-wins, callbacks combined, other keys later-wins."""
    merged: dict[str, Any] = {}
    for config in configs:
        if not config:
            continue
        entries: dict[str, Any] = dict(_validate(config))
        for key, value in entries.items():
            if key == "tags":
                merged["tags"] = sorted(set(merged.get("tags", [])) | set(value or []))
            elif key in ("metadata", "configurable"):
                merged[key] = {**merged.get(key, {}), **(value or {})}
            elif key == "callbacks":
                merged["callbacks"] = _merge_callbacks(merged.get("callbacks"), value)
            elif key == "recursion_limit":
                if value != DEFAULT_RECURSION_LIMIT:
                    merged[key] = value
            else:
                merged[key] = value if value is not None else merged.get(key)
    return merged  # type: ignore[return-value]


def get_config_list(
    config: RunnableConfig | Sequence[RunnableConfig] | None, length: int
) -> list[RunnableConfig]:
    """One config per batch input; a run_id can name one run only."""
    if length < 0:
        raise ValueError(f"batch length must be >= 0, got {length}")
    if isinstance(config, Sequence) and not isinstance(config, (str, bytes)):
        if len(config) != length:
            # langchain_core's type and wording
            raise ValueError(
                "config must be a list of the same length as inputs, "
                f"but got {len(config)} configs for {length} inputs"
            )
        return [ensure_config(c) for c in config]
    if config is not None and config.get("run_id") is not None and length > 1:
        shared = {k: v for k, v in config.items() if k != "run_id"}
        first = ensure_config(config)
        return [first, *(ensure_config(shared) for _ in range(length - 1))]  # type: ignore[arg-type]
    return [ensure_config(config) for _ in range(length)]
