"""`traceable` on the shapes real code takes: dataclasses, overriding methods
that call ``super()``, dunder protocols, stacked decorators, pickled methods,
generators driven by hand, work handed to threads. Each call is one run with
the right parent and status, the code behaves exactly as undecorated, and no
context is left attached."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import inspect
import itertools
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace

from otel_runnables import traceable
from otel_runnables.testing import CapturedRuns, capture_runs


def nothing_left_current(captured: CapturedRuns) -> None:
    assert not trace.get_current_span().get_span_context().is_valid
    assert captured.live_runs == []


# -- classes ---------------------------------------------------------------------------


@traceable
@dataclasses.dataclass
class Point:
    x: int
    y: int = 0

    def scaled(self, k: int) -> Point:
        return Point(self.x * k, self.y * k)


@traceable
class Shape:
    def area(self, unit: str) -> str:
        return f"0{unit}"

    @classmethod
    def unit(cls) -> str:
        return "cm"

    @staticmethod
    def sides(n: int = 0) -> int:
        return n


@traceable
class Square(Shape):
    def area(self, unit: str) -> str:
        return "4" + super().area(unit)

    @classmethod
    def unit(cls) -> str:
        return super().unit().upper()


def test_a_dataclass_keeps_its_generated_methods_and_traces_its_own() -> None:
    with capture_runs() as captured:
        point = Point(1, 2)
        assert point.scaled(3) == Point(3, 6)
        assert repr(point) == "Point(x=1, y=2)"
    assert str(inspect.signature(Point)) == "(x: 'int', y: 'int' = 0) -> None"
    assert [(run.name, run.inputs) for run in captured.runs] == [("Point.scaled", {"k": 3})]
    nothing_left_current(captured)


def test_an_override_calling_super_nests_the_base_run_under_its_own() -> None:
    with capture_runs() as captured:
        assert Square().area("m") == "40m"
        assert Square.unit() == "CM"
    assert captured.tree() == "Square.area\n  Shape.area\nSquare.unit\n  Shape.unit"
    assert captured.run("Shape.area").inputs == {"unit": "m"}
    nothing_left_current(captured)


# -- stacked decorators ------------------------------------------------------------------


class Prices:
    def __init__(self, rate: int) -> None:
        self.rate = rate

    def __hash__(self) -> int:
        return self.rate

    @traceable
    @functools.lru_cache(maxsize=16)  # noqa: B019 - the cache is what is tested
    def price(self, amount: int) -> int:
        return amount * self.rate


def test_a_cached_method_records_its_arguments_without_self() -> None:
    prices = Prices(3)
    with capture_runs() as captured:
        assert prices.price(2) == 6
        assert Prices.price(prices, 5) == 15  # through the class, the instance first
    assert [run.inputs for run in captured.runs] == [{"amount": 2}, {"amount": 5}]


def test_a_cached_function_is_one_run_per_call_hit_or_miss() -> None:
    @traceable
    @functools.lru_cache(maxsize=16)
    def square(n: int) -> int:
        return n * n

    with capture_runs() as captured:
        assert (square(3), square(3)) == (9, 9)
    assert [run.inputs for run in captured.runs] == [{"n": 3}, {"n": 3}]
    assert square.cache_info().hits == 1  # the wrapper passes attributes through


# -- pickling: what pool workers and process pools need ----------------------------------


SHAPE = Shape()


@pytest.mark.parametrize(
    ("method", "args", "result"),
    [
        (SHAPE.area, ("m",), "0m"),
        (Shape.area, (SHAPE, "m"), "0m"),
        (Shape.unit, (), "cm"),
        (SHAPE.unit, (), "cm"),
        (Shape.sides, (3,), 3),
        (SHAPE.sides, (3,), 3),
    ],
    ids=[
        "bound",
        "through-the-class",
        "classmethod",
        "classmethod-of-instance",
        "staticmethod",
        "staticmethod-of-instance",
    ],
)
def test_methods_pickle_as_undecorated_ones_do(
    method: Callable[..., Any], args: tuple[Any, ...], result: Any
) -> None:
    back = pickle.loads(pickle.dumps(method))
    with capture_runs() as captured:
        assert back(*args) == result
    assert [run.name for run in captured.runs] == [method.tracing.name]  # type: ignore[attr-defined]


class Job:
    """Keeps one of its own methods as a callback, as handlers and estimators do."""

    def __init__(self) -> None:
        self.on_done = self.done
        self.runs = 0

    @traceable
    def done(self) -> Job:
        self.runs += 1
        return self


def test_a_deep_copy_rebinds_a_stored_method_to_the_copy_as_python_does() -> None:
    job = Job()
    copied = copy.deepcopy(job)
    with capture_runs() as captured:
        assert copied.on_done() is copied
        assert copy.copy(job).on_done() is job  # a shallow copy shares it
    assert (job.runs, copied.runs) == (1, 1)
    assert [run.name for run in captured.runs] == ["Job.done", "Job.done"]
    assert copy.deepcopy(Shape.unit)() == "cm" and copy.deepcopy(SHAPE.sides)(2) == 2


# -- recursion ---------------------------------------------------------------------------


def _plain_depth(n: int) -> int:
    return 0 if n == 0 else 1 + _plain_depth(n - 1)


@traceable
def _traced_depth(n: int) -> int:
    return 0 if n == 0 else 1 + _traced_depth(n - 1)


def test_a_traced_recursive_function_goes_a_quarter_as_deep_as_an_untraced_one() -> None:
    deepest = 0
    with contextlib.suppress(RecursionError):
        for tried in itertools.count(0, 25):
            _plain_depth(tried)
            deepest = tried
    depth = deepest // 4
    with capture_runs() as captured:
        assert _traced_depth(depth) == depth
    assert len(captured.runs) == depth + 1
    assert [root.inputs for root in captured.roots] == [{"n": depth}]
    nothing_left_current(captured)


# -- exceptions --------------------------------------------------------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for this error")


@pytest.mark.parametrize("kind", ["function", "coroutine", "generator"])
def test_an_error_whose_str_raises_escapes_as_itself_and_ends_the_run(kind: str) -> None:
    error = Unprintable()

    @traceable
    def function() -> None:
        raise error

    @traceable
    async def coroutine() -> None:
        raise error

    @traceable
    def generator() -> Iterator[int]:
        yield 1
        raise error

    calls: dict[str, Callable[[], Any]] = {
        "function": function,
        "coroutine": lambda: asyncio.run(coroutine()),
        "generator": lambda: list(generator()),
    }
    with capture_runs() as captured, pytest.raises(Unprintable) as raised:
        calls[kind]()
    assert raised.value is error
    assert captured.run(kind).error == "Unprintable: <unrepresentable Unprintable>"
    [event] = captured.run(kind).span.events
    assert event.name == "exception" and event.attributes is not None
    assert event.attributes["exception.type"] == f"{__name__}.Unprintable"
    nothing_left_current(captured)
