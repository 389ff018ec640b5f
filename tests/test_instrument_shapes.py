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
import gc
import inspect
import itertools
import pickle
import warnings
from collections.abc import AsyncIterator, Callable, Generator, Iterator
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


class Session:
    """The with-protocols, and __call__, each decorated by hand (dunders are
    left alone by a class decorator)."""

    @traceable
    def __enter__(self) -> Session:
        return self

    @traceable
    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> bool:
        return kind is not None and issubclass(kind, LookupError)  # swallows them

    @traceable
    async def __aenter__(self) -> Session:
        return self

    @traceable
    async def __aexit__(self, kind: type[BaseException] | None, *rest: Any) -> bool:
        return kind is not None and issubclass(kind, LookupError)

    @traceable
    def __call__(self, x: int) -> int:
        return x + 1


def test_with_protocol_dunders_and_call_are_runs_and_errors_pass_as_before() -> None:
    async def use_async() -> None:
        async with Session():
            raise KeyError("swallowed")

    with capture_runs() as captured:
        with Session() as session:
            assert session(1) == 2
        with pytest.raises(ValueError, match="escapes"), Session():
            raise ValueError("escapes")
        asyncio.run(use_async())
    names = [run.name for run in captured.runs]
    assert names == ["Session.__enter__", "Session.__call__", "Session.__exit__"] + [
        "Session.__enter__",
        "Session.__exit__",
        "Session.__aenter__",
        "Session.__aexit__",
    ]
    assert [run.error for run in captured.runs] == [None] * 7  # __exit__ itself returned
    assert captured.runs[-1].outputs is True
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


def _scale(amount: int, factor: int) -> int:
    return amount * factor


class Discounts:
    half = traceable(functools.partial(_scale, factor=2))  # never bound: no self


def test_a_cached_method_records_its_arguments_without_self() -> None:
    prices = Prices(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Python 3.13 on partials as attributes
        with capture_runs() as captured:
            assert prices.price(2) == 6
            assert Prices.price(prices, 5) == 15  # through the class, the instance first
            assert Discounts().half(4) == 8
    assert [run.inputs for run in captured.runs] == [{"amount": 2}, {"amount": 5}, {"amount": 4, "factor": 2}]


def test_a_cached_function_is_one_run_per_call_hit_or_miss() -> None:
    @traceable
    @functools.lru_cache(maxsize=16)
    def square(n: int) -> int:
        return n * n

    with capture_runs() as captured:
        assert (square(3), square(3)) == (9, 9)
    assert [run.inputs for run in captured.runs] == [{"n": 3}, {"n": 3}]
    assert square.cache_info().hits == 1  # the wrapper passes attributes through


def logged(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return call


def test_over_and_under_a_wraps_decorator_and_contextmanager() -> None:
    @traceable
    @logged
    def add(a: int, b: int = 2) -> int:
        return a + b

    @contextlib.contextmanager
    @traceable
    def opened(name: str) -> Iterator[str]:
        yield name.upper()

    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 2) -> 'int'"
    with capture_runs() as captured:
        assert add(1) == 3
        with opened("a") as handle:
            assert handle == "A"
            assert add(2, b=5) == 7  # the generator's run is current only while it runs
        with pytest.raises(KeyError), opened("b"):
            raise KeyError("b")
    assert [(run.name, run.inputs, run.error) for run in captured.runs] == [
        ("add", {"a": 1, "b": 2}, None),
        ("opened", {"name": "a"}, None),
        ("add", {"a": 2, "b": 5}, None),
        ("opened", {"name": "b"}, "KeyError: 'b'"),  # thrown into the generator, escaped
    ]
    assert [root.name for root in captured.roots] == ["add", "opened", "add", "opened"]
    nothing_left_current(captured)


@pytest.mark.parametrize("via", ["class", "instance"])
@pytest.mark.parametrize("name", ["area", "unit", "sides", "poll", "watch", "lines"])
def test_inspect_answers_as_for_the_undecorated_method(name: str, via: str) -> None:
    class Plain:
        def area(self, unit: str) -> str:
            return unit

        @classmethod
        def unit(cls) -> str:
            return "cm"

        @staticmethod
        def sides(n: int = 0) -> int:
            return n

        async def poll(self, timeout: float) -> None:
            return None

        async def watch(self, key: str) -> AsyncIterator[str]:
            yield key

        def lines(self, path: str) -> Iterator[str]:
            yield path

    traced = traceable(type("Traced", (), {k: v for k, v in vars(Plain).items() if not k.startswith("__")}))

    def answers(method: Any) -> tuple[Any, ...]:
        return (
            str(inspect.signature(method)),
            inspect.iscoroutinefunction(method),
            inspect.isasyncgenfunction(method),
            inspect.isgeneratorfunction(method),
            inspect.ismethod(method),
            inspect.isfunction(method),
        )

    plain, decorated = (getattr(cls if via == "class" else cls(), name) for cls in (Plain, traced))
    assert decorated.tracing.name == f"Traced.{name}"
    assert answers(decorated) == answers(plain)


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


async def _plain_async_depth(n: int) -> int:
    return 0 if n == 0 else 1 + await _plain_async_depth(n - 1)


@traceable
async def _traced_async_depth(n: int) -> int:
    return 0 if n == 0 else 1 + await _traced_async_depth(n - 1)


def test_a_traced_recursive_coroutine_goes_two_fifths_as_deep_as_an_untraced_one() -> None:
    deepest = 0
    with contextlib.suppress(RecursionError):
        for tried in itertools.count(0, 25):
            asyncio.run(_plain_async_depth(tried))
            deepest = tried
    depth = deepest * 2 // 5
    with capture_runs() as captured:
        assert asyncio.run(_traced_async_depth(depth)) == depth
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


# -- coroutines that never run --------------------------------------------------------------


async def fetch(x: int) -> int:
    await asyncio.sleep(0)
    return x


traced_fetch = traceable(fetch)


def _cancelled_before_start(function: Callable[[int], Any]) -> None:
    async def main() -> None:
        task = asyncio.create_task(function(1))
        task.cancel()  # before its first step: asyncio throws into the unstarted coroutine
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


def _closed_unstarted(function: Callable[[int], Any]) -> None:
    function(1).close()


def _never_awaited(function: Callable[[int], Any]) -> None:
    function(1)


@pytest.mark.parametrize("how", [_cancelled_before_start, _closed_unstarted, _never_awaited])
def test_a_coroutine_that_never_runs_warns_exactly_as_undecorated(how: Callable[..., None]) -> None:
    def warned(function: Callable[[int], Any]) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            how(function)
            gc.collect()
        return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]

    with capture_runs() as captured:
        assert warned(traced_fetch) == warned(fetch)
    assert captured.runs == []
    nothing_left_current(captured)


# -- threads and generators driven by hand ---------------------------------------------------


@traceable
def lookup(key: str) -> str:
    return key.upper()


def test_asyncio_to_thread_nests_the_call_under_the_callers_run() -> None:
    @traceable
    async def handler() -> list[str]:
        return [await asyncio.to_thread(lookup, "a"), await asyncio.to_thread(functools.partial(lookup, "b"))]

    with capture_runs() as captured:
        assert asyncio.run(handler()) == ["A", "B"]
    assert captured.tree() == "handler\n  lookup\n  lookup"
    nothing_left_current(captured)


def test_yield_from_a_traced_generator_nests_it_and_passes_its_return_value() -> None:
    @traceable
    def inner() -> Generator[int, None, str]:
        yield 1
        return "done"

    @traceable
    def outer() -> Iterator[Any]:
        returned = yield from inner()
        yield returned

    with capture_runs() as captured:
        assert list(outer()) == [1, "done"]
    assert captured.tree() == "outer\n  inner"
    assert captured.run("outer").outputs == [1, "done"]
    nothing_left_current(captured)


class Stop(Exception):
    pass


@pytest.mark.parametrize(
    ("ending", "error"),
    [
        ("exhausted", None),
        ("aclose", None),
        ("athrow-handled", None),
        ("athrow-escapes", "Stop: escapes"),
        ("raises", "Stop: raised"),
    ],
)
def test_every_ending_of_an_async_generator_ends_its_run_once(ending: str, error: str | None) -> None:
    thrown = Stop("escapes")
    raised = Stop("raised")

    @traceable
    async def feed(n: int) -> AsyncIterator[int]:
        for i in range(n):
            try:
                yield i
            except ValueError:
                yield -1
        if ending == "raises":
            raise raised

    async def drive() -> Any:
        stream = feed(2)
        assert await stream.asend(None) == 0
        if ending == "aclose":
            await stream.aclose()
        elif ending == "athrow-handled":
            assert await stream.athrow(ValueError()) == -1
            assert [i async for i in stream] == [1]
        elif ending == "athrow-escapes":
            with pytest.raises(Stop) as got:
                await stream.athrow(thrown)
            assert got.value is thrown
        elif ending == "raises":
            with pytest.raises(Stop) as got:
                [i async for i in stream]
            assert got.value is raised
        else:
            assert [i async for i in stream] == [1]

    with capture_runs() as captured:
        asyncio.run(drive())
    [run] = captured.runs
    assert run.error == error
    nothing_left_current(captured)
