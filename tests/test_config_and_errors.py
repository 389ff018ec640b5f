"""Invalid use gets a clear, typed error naming what was wrong."""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any

import pytest

from otel_runnables import (
    BaseCallbackHandler,
    InvalidConfigError,
    InvalidEventError,
    OtelRunnablesError,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    RunnableSequence,
    adispatch_custom_event,
    chain,
    dispatch_custom_event,
)
from tests.conftest import GetSpans


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"tags": "one"}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"metadata": [("a", 1)]}, "metadata"),
        ({"callbacks": object()}, "callbacks"),
        ({"run_id": "not-a-uuid"}, "run_id"),
        ({"run_name": 5}, "run_name"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"recursion_limit": "25"}, "recursion_limit"),
        ({"configurable": 1}, "configurable"),
    ],
)
def test_wrong_config_types(config: Any, key: str) -> None:
    with pytest.raises(InvalidConfigError, match=key) as caught:
        RunnableLambda(lambda x: x).invoke(1, config)
    assert isinstance(caught.value, TypeError)


def test_config_must_be_a_dict() -> None:
    with pytest.raises(InvalidConfigError, match="dict"):
        RunnableLambda(lambda x: x).invoke(1, ["tags"])  # type: ignore[arg-type]


def test_with_config_is_checked_when_bound() -> None:
    with pytest.raises(InvalidConfigError, match="tags"):
        RunnableLambda(lambda x: x).with_config(tags="x")  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "match"), [("", "empty"), (None, "str"), (3, "str")])
def test_bad_event_names(name: Any, match: str) -> None:
    def work(x: int) -> int:
        dispatch_custom_event(name, {})
        return x

    with pytest.raises(InvalidEventError, match=match):
        RunnableLambda(work).invoke(1)


def test_invalid_construction() -> None:
    with pytest.raises(TypeError, match="Expected a callable type for `func`"):
        RunnableLambda(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 steps"):
        RunnableSequence(RunnableLambda(lambda x: x))
    with pytest.raises(TypeError, match="branch keys must be str"):
        RunnableParallel({1: lambda x: x})
    with pytest.raises(TypeError, match="Expected a Runnable, callable or dict"):
        RunnableLambda(lambda x: x) | 5  # type: ignore[operator]


def test_batch_config_count_must_match() -> None:
    with pytest.raises(ValueError, match="2 configs for 3 inputs"):
        RunnableLambda(lambda x: x).batch([1, 2, 3], [{}, {}])


def test_a_run_id_names_one_batch_item_only() -> None:
    given = uuid.UUID(int=5)
    seen: list[uuid.UUID] = []

    class Ids(BaseCallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            seen.append(kwargs["run_id"])

    RunnableLambda(lambda x: x).batch([1, 2], {"run_id": given, "callbacks": [Ids()], "max_concurrency": 1})
    assert seen[0] == given and seen[1] != given


def test_recursion_limit_stops_runnables_returning_themselves() -> None:
    loop: RunnableLambda = RunnableLambda(lambda x: loop)
    with pytest.raises(RecursionError):
        loop.invoke(1, {"recursion_limit": 5})


# -- invalid configs: typed, naming the key, before anything runs -------------------------------------


class Calls(BaseCallbackHandler):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.calls.append("start")

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self.calls.append("error")


INVALID = [
    ({"tags": ("ok", 3)}, "tags"),
    ({"tags": {"a"}}, "tags"),
    ({"metadata": "k=v"}, "metadata"),
    ({"callbacks": "handler"}, "callbacks"),
    ({"run_id": str(uuid.UUID(int=1))}, "run_id"),
    ({"run_id": 1}, "run_id"),
    ({"max_concurrency": -1}, "max_concurrency"),
    ({"max_concurrency": True}, "max_concurrency"),
    ({"max_concurrency": 1.5}, "max_concurrency"),
]


@pytest.mark.parametrize(("config", "key"), INVALID)
def test_invalid_config_names_its_key_and_runs_nothing(config: Any, key: str, spans: GetSpans) -> None:
    calls = Calls()
    called: list[int] = []
    runnable = RunnableLambda(lambda x: called.append(x))
    with pytest.raises(InvalidConfigError, match=re.escape(f"config['{key}']")) as caught:
        runnable.invoke(1, {**config, "callbacks": [calls]} if key != "callbacks" else config)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, OtelRunnablesError)
    assert called == [] and calls.calls == [] and spans() == []


@pytest.mark.parametrize(("config", "key"), INVALID)
async def test_invalid_config_in_every_entry_point(config: Any, key: str) -> None:
    runnable = RunnableLambda(lambda x: x) | RunnableLambda(lambda x: x)
    pattern = re.escape(f"config['{key}']")
    with pytest.raises(InvalidConfigError, match=pattern):
        await runnable.ainvoke(1, config)
    with pytest.raises(InvalidConfigError, match=pattern):
        list(runnable.stream(1, config))
    with pytest.raises(InvalidConfigError, match=pattern):
        runnable.batch([1, 2], config)
    with pytest.raises(InvalidConfigError, match=pattern):
        await runnable.abatch([1, 2], [{}, config])
    with pytest.raises(InvalidConfigError, match=pattern):
        RunnableParallel(a=lambda x: x).invoke(1, config)


def test_invalid_config_of_a_nested_call_fails_that_call_only() -> None:
    calls = Calls()
    child = RunnableLambda(lambda x: x)

    def parent(x: int) -> int:
        return child.invoke(x, {"tags": "not-a-list"})  # type: ignore[typeddict-item]

    with pytest.raises(InvalidConfigError, match=re.escape("config['tags']")):
        RunnableLambda(parent).invoke(1, {"callbacks": [calls]})
    # the parent ran and failed with the error; the child never started
    assert calls.calls == ["start", "error"]


def test_valid_configs_are_accepted() -> None:
    handler = Calls()
    config: Any = {
        "tags": ["a"],
        "metadata": {"k": object()},
        "callbacks": [handler],
        "run_id": uuid.uuid4(),
        "run_name": "n",
        "max_concurrency": 1,
        "recursion_limit": 3,
        "configurable": {"x": 1},
        "tags_none": None,
    }
    assert RunnableLambda(lambda x: x).invoke(1, config) == 1
    assert RunnableLambda(lambda x: x).invoke(1, {"tags": None, "metadata": None, "callbacks": None}) == 1
    assert RunnableLambda(lambda x: x).invoke(1, {"tags": ("tuple", "ok")}) == 1
    assert handler.calls == ["start"]


# -- invalid custom events --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", None, 3, b"bytes", ["e"]])
async def test_bad_event_names_async_and_outside_a_run(name: Any) -> None:
    async def work(x: int) -> int:
        await adispatch_custom_event(name, {})
        return x

    with pytest.raises(InvalidEventError) as caught:
        await RunnableLambda(work).ainvoke(1)
    assert isinstance(caught.value, OtelRunnablesError)
    # the name is checked first, even where no run exists
    with pytest.raises(InvalidEventError):
        dispatch_custom_event(name, {})


def test_a_bad_event_name_fails_the_run_with_that_error() -> None:
    calls = Calls()

    def work(x: int) -> int:
        dispatch_custom_event("", x)
        return x

    with pytest.raises(InvalidEventError, match="empty"):
        RunnableLambda(work).invoke(1, {"callbacks": [calls]})
    assert calls.calls == ["start", "error"]


def test_event_names_are_free_form_strings() -> None:
    received: list[str] = []

    class Names(BaseCallbackHandler):
        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            received.append(name)

    names = [" ", "with space", "ünïcödé", "a.b/c:d", "x" * 500]

    def work(x: int) -> int:
        for name in names:
            dispatch_custom_event(name, x)
        return x

    RunnableLambda(work).invoke(1, {"callbacks": [Names()]})
    assert received == names


# -- async functions called synchronously -------------------------------------------------------------------

SYNC_INVOKE = "Cannot invoke a coroutine function synchronously.Use `ainvoke` instead."


async def _afn(x: int) -> int:
    return x


async def _agen(x: int) -> Any:
    yield x


@pytest.mark.parametrize("func", [_afn, _agen])
def test_invoking_an_async_function_synchronously(func: Any, spans: GetSpans) -> None:
    calls = Calls()
    with pytest.raises(TypeError) as caught:
        RunnableLambda(func).invoke(1, {"callbacks": [calls]})
    assert str(caught.value) == SYNC_INVOKE
    assert calls.calls == [] and spans() == []


def test_streaming_an_async_function_synchronously() -> None:
    calls = Calls()
    with pytest.raises(TypeError) as caught:
        list(RunnableLambda(_afn).stream(1, {"callbacks": [calls]}))
    assert str(caught.value) == "Cannot stream a coroutine function synchronously.Use `astream` instead."
    assert calls.calls == []


def test_an_async_step_in_a_sync_sequence_fails_the_sequence() -> None:
    calls = Calls()
    with pytest.raises(TypeError, match=re.escape(SYNC_INVOKE)):
        (RunnableLambda(lambda x: x) | _afn).invoke(1, {"callbacks": [calls]})
    # sequence start, step 1 start, (step 1 ends), step 2 refuses before starting, sequence error
    assert calls.calls == ["start", "start", "error"]


async def test_an_async_function_is_fine_with_ainvoke() -> None:
    assert await RunnableLambda(_afn).ainvoke(2) == 2
    assert await RunnableLambda(_agen).ainvoke(3) == 3


# -- names ------------------------------------------------------------------------------------------------


def _named(x: int) -> int:
    return x


class _Callable:
    def __call__(self, x: int) -> int:
        return x

    def method(self, x: int) -> int:
        return x


@pytest.mark.parametrize(
    ("runnable", "name"),
    [
        (RunnableLambda(_named), "_named"),
        (RunnableLambda(lambda x: x), "RunnableLambda"),
        (RunnableLambda(functools.partial(_named)), "RunnableLambda"),
        (RunnableLambda(_Callable()), "RunnableLambda"),
        (RunnableLambda(_Callable().method), "method"),
        (RunnableLambda(_afn), "_afn"),
        (RunnableLambda(_agen), "_agen"),
        (RunnableLambda(_named, name="given"), "given"),
        (RunnableLambda(lambda x: x, name="given"), "given"),
        (RunnableLambda(_named, afunc=_afn), "_named"),
        (chain(_named), "_named"),
        (RunnableLambda(_named) | _named, "RunnableSequence"),
        (RunnableSequence(_named, _named, name="pipeline"), "pipeline"),
        (RunnableParallel(z=_named, a=_named, m=_named), "RunnableParallel<z,a,m>"),
        (RunnableParallel({"b": _named}, a=_named), "RunnableParallel<b,a>"),
        (RunnablePassthrough(), "RunnablePassthrough"),
        (RunnableLambda(_named).with_config(run_name="bound"), "_named"),
        (RunnableLambda(_named).with_config(tags=["t"]), "_named"),
    ],
)
def test_get_name(runnable: Any, name: str) -> None:
    assert runnable.get_name() == name


def test_the_run_name_is_run_name_else_get_name(spans: GetSpans) -> None:
    names: list[str] = []

    class Names(BaseCallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            names.append(kwargs["name"])

    config: Any = {"callbacks": [Names()]}
    RunnableLambda(_named).invoke(1, config)
    RunnableLambda(_named).invoke(1, {**config, "run_name": "from_config"})
    bound = RunnableLambda(_named).with_config(run_name="bound")
    bound.invoke(1, config)
    bound.invoke(1, {**config, "run_name": "call_wins"})
    assert names == ["_named", "from_config", "bound", "call_wins"]
    assert [s.name for s in spans()] == names


def test_run_name_and_run_id_name_one_run_only() -> None:
    seen: list[tuple[str, Any]] = []

    class Names(BaseCallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            seen.append((kwargs["name"], kwargs["run_id"]))

    given = uuid.UUID(int=3)
    child = RunnableLambda(_named)

    def parent(x: int, config: Any) -> int:
        assert "run_name" not in config and "run_id" not in config
        return child.invoke(x)

    RunnableLambda(parent).invoke(1, {"callbacks": [Names()], "run_name": "top", "run_id": given})
    assert seen[0] == ("top", given)
    assert seen[1][0] == "_named" and seen[1][1] != given
