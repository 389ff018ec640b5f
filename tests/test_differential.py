"""Differential tests: each program runs through langchain_core and through
otel_runnables; the normalised callback records must be identical."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.libs import OURS, REFERENCE
from tests.recorder import make_recorder, normalise, plain

os.environ.pop("LANGCHAIN_TRACING_V2", None)
os.environ.pop("LANGSMITH_TRACING", None)

Program = Callable[[Any], Awaitable[list[Any]]]
PROGRAMS: dict[str, Program] = {}


def program(func: Program) -> Program:
    PROGRAMS[func.__name__] = func
    return func


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return {"returned": plain(call())}
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}


async def aoutcome(call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return {"returned": plain(await call())}
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}


@program
async def implicit_and_explicit_inheritance(lib: Any) -> list[Any]:
    def leaf(x: int) -> int:
        lib.dispatch_custom_event("leaf", {"x": x})
        return x + 1

    leaf_r = lib.RunnableLambda(leaf)

    def implicit(x: int) -> int:
        return leaf_r.invoke(x)

    def explicit(x: int, config: Any) -> int:
        return leaf_r.invoke(x, {**config, "tags": ["own"], "metadata": {"m": "child"}})

    out: list[Any] = []
    for fn in (implicit, explicit):
        h = make_recorder(lib.BaseCallbackHandler)
        cfg = {"callbacks": [h], "tags": ["a", "b"], "metadata": {"m": "root", "r": 1}}
        out.append(outcome(lambda fn=fn, cfg=cfg: lib.RunnableLambda(fn).invoke(1, cfg)))
        out += h.records
    return out


@program
async def with_config_bindings(lib: Any) -> list[Any]:
    def leaf(x: str) -> str:
        lib.dispatch_custom_event("leaf", x)
        return x

    bound = lib.RunnableLambda(leaf).with_config(
        run_name="renamed", tags=["zeta", "alpha"], metadata={"k": "bound", "b": True}
    )

    async def implicit(x: str) -> str:
        return await bound.ainvoke(x)

    async def explicit(x: str, config: Any) -> str:
        return await bound.ainvoke(x, config)

    out: list[Any] = []
    for fn in (implicit, explicit):
        h = make_recorder(lib.AsyncCallbackHandler, is_async=True)
        cfg = {"callbacks": [h], "tags": ["root"], "metadata": {"k": "root"}}
        out.append(await aoutcome(lambda fn=fn, cfg=cfg: lib.RunnableLambda(fn).ainvoke("v", cfg)))
        out += h.records
    return out


@program
async def sequence_step_tags_and_events(lib: Any) -> list[Any]:
    def first(x: int) -> int:
        lib.dispatch_custom_event("in_step", x)
        return x + 1

    seq = lib.RunnableLambda(first) | (lambda x: x * 2) | lib.RunnableLambda(first)
    h = make_recorder(lib.BaseCallbackHandler)
    out = [outcome(lambda: seq.invoke(1, {"callbacks": [h], "tags": ["t"], "configurable": {"user": "u1"}}))]
    ah = make_recorder(lib.AsyncCallbackHandler, is_async=True)
    out.append(await aoutcome(lambda: seq.ainvoke(1, {"callbacks": [ah], "run_name": "named"})))
    return out + h.records + ah.records


@program
async def parallel_branches(lib: Any) -> list[Any]:
    par = lib.RunnableParallel(a=lambda x: x + 1, b=lib.RunnableLambda(lambda x: x * 2))
    h = make_recorder(lib.BaseCallbackHandler)
    out = [outcome(lambda: par.invoke(3, {"callbacks": [h], "tags": ["p"]}))]
    # branches are concurrent: compare each run's records, not their interleaving
    return out + sorted(h.records, key=lambda r: (r.get("tags", []), r["cb"]))


@program
async def errors_propagate(lib: Any) -> list[Any]:
    class Boom(ValueError):
        pass

    def fail(x: int) -> int:
        raise Boom(f"bad {x}")

    fail_r = lib.RunnableLambda(fail)
    seq = lib.RunnableLambda(lambda x: x + 1) | fail_r | (lambda x: x)
    h = make_recorder(lib.BaseCallbackHandler)
    out = [outcome(lambda: lib.RunnableLambda(lambda x: fail_r.invoke(x)).invoke(1, {"callbacks": [h]}))]
    out.append(outcome(lambda: seq.invoke(1, {"callbacks": [h]})))
    ah = make_recorder(lib.AsyncCallbackHandler, is_async=True)
    out.append(await aoutcome(lambda: seq.ainvoke(1, {"callbacks": [ah]})))
    return out + h.records + ah.records


@program
async def failing_handlers(lib: Any) -> list[Any]:
    def fn(x: int) -> int:
        lib.dispatch_custom_event("e", x)
        return x

    swallow = make_recorder(lib.BaseCallbackHandler, fail_in=("on_custom_event",))
    after = make_recorder(lib.BaseCallbackHandler)
    out = [outcome(lambda: lib.RunnableLambda(fn).invoke(1, {"callbacks": [swallow, after]}))]
    loud = make_recorder(lib.BaseCallbackHandler, fail_in=("on_custom_event",), raise_error=True)
    out.append(outcome(lambda: lib.RunnableLambda(fn).invoke(2, {"callbacks": [loud]})))
    return out + swallow.records + after.records + loud.records


@program
async def ignore_flags(lib: Any) -> list[Any]:
    def fn(x: int) -> int:
        lib.dispatch_custom_event("e", x)
        return x

    no_chain = make_recorder(lib.BaseCallbackHandler, ignore_chain=True)
    no_custom = make_recorder(lib.BaseCallbackHandler, ignore_custom_event=True)
    out = [outcome(lambda: lib.RunnableLambda(fn).invoke(1, {"callbacks": [no_chain, no_custom]}))]
    return out + no_chain.records + no_custom.records


@program
async def batch_items_are_roots(lib: Any) -> list[Any]:
    def work(x: int) -> int:
        lib.dispatch_custom_event("item", x)
        if x == 3:
            raise ValueError("three")
        return x * 10

    r = lib.RunnableLambda(work)
    h = make_recorder(lib.BaseCallbackHandler)
    out = [
        outcome(lambda: r.batch([1, 2, 3], {"callbacks": [h], "max_concurrency": 1}, return_exceptions=True))
    ]
    out.append(outcome(lambda: r.batch([3, 1], {"max_concurrency": 1})))
    ah = make_recorder(lib.AsyncCallbackHandler, is_async=True)
    out.append(await aoutcome(lambda: r.abatch([1, 2], {"callbacks": [ah], "max_concurrency": 1})))
    return out + h.records + ah.records


@program
async def streaming_path_arguments(lib: Any) -> list[Any]:
    def gen(x: str) -> Any:
        yield x
        lib.dispatch_custom_event("mid", x)
        yield x + "!"

    seq = lib.RunnableLambda(lambda x: x.upper()) | lib.RunnableLambda(gen)
    h = make_recorder(lib.BaseCallbackHandler)
    out = [{"chunks": list(seq.stream("ab", {"callbacks": [h]}))}]
    out.append(outcome(lambda: lib.RunnableLambda(gen).invoke("x")))
    return out + h.records


@program
async def async_generators_and_returned_runnables(lib: Any) -> list[Any]:
    async def agen(x: int) -> Any:
        for i in range(x):
            await lib.adispatch_custom_event("tick", i)
            yield [i]

    inner = lib.RunnableLambda(lambda x: x * 100)
    router = lib.RunnableLambda(lambda x: inner)
    h = make_recorder(lib.AsyncCallbackHandler, is_async=True)
    out = [await aoutcome(lambda: lib.RunnableLambda(agen).ainvoke(3, {"callbacks": [h]}))]
    out.append(await aoutcome(lambda: router.ainvoke(2, {"callbacks": [h]})))
    return out + h.records


@program
async def passthrough_with_func(lib: Any) -> list[Any]:
    def side(x: str) -> None:
        lib.dispatch_custom_event("seen", x)

    seq = lib.RunnableLambda(lambda x: x + "!") | lib.RunnablePassthrough(side)
    h = make_recorder(lib.BaseCallbackHandler)
    return [outcome(lambda: seq.invoke("a", {"callbacks": [h]}))] + h.records


@program
async def run_id_and_name_from_config(lib: Any) -> list[Any]:
    import uuid

    given = uuid.UUID(int=42)
    h = make_recorder(lib.BaseCallbackHandler)
    seq = lib.RunnableLambda(lambda x: x) | lib.RunnableLambda(lambda x: x)
    out = [outcome(lambda: seq.invoke(1, {"callbacks": [h], "run_id": given, "run_name": "mine"}))]
    return out + [{"given_id_used": [r["run_id"] == f"uuid:{given}" for r in h.records]}] + h.records


@program
async def dispatch_outside_a_run(lib: Any) -> list[Any]:
    out = [outcome(lambda: lib.dispatch_custom_event("e", 1))]
    out.append(await aoutcome(lambda: lib.adispatch_custom_event("e", 1)))
    return out


@program
async def sync_invoke_of_async_function(lib: Any) -> list[Any]:
    async def afn(x: int) -> int:
        return x

    h = make_recorder(lib.BaseCallbackHandler)
    return [outcome(lambda: lib.RunnableLambda(afn).invoke(1, {"callbacks": [h]}))] + h.records


@pytest.mark.parametrize("name", sorted(PROGRAMS))
async def test_same_callbacks_as_langchain_core(name: str) -> None:
    expected = normalise(await PROGRAMS[name](REFERENCE))
    got = normalise(await PROGRAMS[name](OURS))
    assert got == expected
