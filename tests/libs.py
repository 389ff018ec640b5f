"""The same names from langchain_core (the reference) and from otel_runnables,
so one program can run through both; and pieces of such programs that several
test files use."""

from __future__ import annotations

import functools
from types import ModuleType, SimpleNamespace
from typing import Any

import langchain_core.callbacks as lc_callbacks
import langchain_core.callbacks.manager as lc_manager
import langchain_core.runnables as lc_runnables

import otel_runnables

NAMES = (
    "RunnableLambda",
    "RunnableSequence",
    "RunnableParallel",
    "RunnablePassthrough",
    "RunnableConfig",
    "ensure_config",
    "chain",
    "dispatch_custom_event",
    "adispatch_custom_event",
    "BaseCallbackHandler",
    "AsyncCallbackHandler",
)


def library(name: str, *modules: ModuleType) -> SimpleNamespace:
    """Every one of ``NAMES``, each from the first of ``modules`` that has it."""
    found = {}
    for wanted in NAMES:
        holders = [module for module in modules if hasattr(module, wanted)]
        if not holders:
            raise AttributeError(f"{name} has no {wanted}")
        found[wanted] = getattr(holders[0], wanted)
    return SimpleNamespace(name=name, **found)


REFERENCE = library("langchain_core", lc_runnables, lc_manager, lc_callbacks)
OURS = library("otel_runnables", otel_runnables)


def evented_leaf(lib: Any) -> Any:
    """A runnable ``leaf`` (an ``async def``) that dispatches a ``leaf`` event
    with its input and returns the input plus one."""

    async def leaf(x: int) -> int:
        await lib.adispatch_custom_event("leaf", {"x": x})
        return x + 1

    return lib.RunnableLambda(leaf)


def recovering_parent(lib: Any) -> Any:
    """A runnable ``tolerant`` whose child ``failing`` raises ZeroDivisionError;
    the parent catches it and returns ``"recovered"``."""
    failing = lib.RunnableLambda(lambda x: 1 / 0, name="failing")

    def tolerant(x: int) -> str:
        try:
            failing.invoke(x)
        except ZeroDivisionError:
            return "recovered"
        return "unreachable"

    return lib.RunnableLambda(tolerant)


def async_callables(lib: Any) -> dict[str, Any]:
    """Callables that are async without being ``async def`` functions."""

    class Awaits:
        async def __call__(self, x: int) -> int:
            await lib.adispatch_custom_event("awaits", x)
            return x + 1

    class Yields:
        async def __call__(self, x: int) -> Any:
            await lib.adispatch_custom_event("yields", x)
            yield x
            yield x * 10

    class TakesConfig:
        async def __call__(self, x: int, config: Any) -> Any:
            return {"x": x, "tags": config["tags"]}

    class ReturnsARunnable:
        async def __call__(self, x: int) -> Any:
            return lib.RunnableLambda(lambda y: y - 1)

    class Service:
        def __init__(self, factor: int) -> None:
            self.factor = factor

        async def scale(self, x: int) -> int:
            return x * self.factor

        async def repeat(self, x: int) -> Any:
            for _ in range(self.factor):
                yield x

    async def add(x: int, y: int) -> int:
        return x + y

    async def count(x: int, up_to: int) -> Any:
        for n in range(x, up_to):
            yield n

    return {
        "awaits": Awaits(),
        "yields": Yields(),
        "takes_config": TakesConfig(),
        "returns_a_runnable": ReturnsARunnable(),
        "bound_method": Service(3).scale,
        "bound_generator_method": Service(2).repeat,
        "partial": functools.partial(add, y=5),
        "partial_generator": functools.partial(count, up_to=4),
    }
