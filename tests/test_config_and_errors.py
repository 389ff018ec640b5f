"""Invalid use gets a clear, typed error naming what was wrong."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from otel_runnables import (
    InvalidConfigError,
    InvalidEventError,
    RunnableLambda,
    RunnableParallel,
    RunnableSequence,
    dispatch_custom_event,
)


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
    with pytest.raises(TypeError, match="callable"):
        RunnableLambda(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 steps"):
        RunnableSequence(RunnableLambda(lambda x: x))
    with pytest.raises(ValueError, match="at least one branch"):
        RunnableParallel({})
    with pytest.raises(TypeError, match="Runnable, a callable or a dict"):
        RunnableLambda(lambda x: x) | 5  # type: ignore[operator]


def test_batch_config_count_must_match() -> None:
    with pytest.raises(InvalidConfigError, match="2 configs for 3 inputs"):
        RunnableLambda(lambda x: x).batch([1, 2, 3], [{}, {}])


def test_a_run_id_names_one_batch_item_only() -> None:
    given = uuid.UUID(int=5)
    seen: list[uuid.UUID] = []

    from otel_runnables import BaseCallbackHandler

    class Ids(BaseCallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            seen.append(kwargs["run_id"])

    RunnableLambda(lambda x: x).batch([1, 2], {"run_id": given, "callbacks": [Ids()], "max_concurrency": 1})
    assert seen[0] == given and seen[1] != given


def test_recursion_limit_stops_runnables_returning_themselves() -> None:
    loop: RunnableLambda = RunnableLambda(lambda x: loop)
    with pytest.raises(RecursionError):
        loop.invoke(1, {"recursion_limit": 5})
