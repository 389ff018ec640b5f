"""`traceable`: every callable kind is traced, called exactly as before, and a runnable."""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_runnables import (
    BaseCallbackHandler,
    Runnable,
    RunnableLambda,
    adispatch_custom_event,
    dispatch_custom_event,
    traceable,
)
from otel_runnables._instrumentation import TracedFunction
from otel_runnables._instrumentation._signature import CallShape
from otel_runnables.testing import capture_runs
from tests.recorder import make_recorder


@traceable(run_type="tool", tags=["etl"], metadata={"team": "data"})
def ingest(path: str, *, limit: int = 100) -> int:
    """Read up to ``limit`` rows of ``path``."""
    for step in range(2):
        dispatch_custom_event("progress", {"step": step + 1, "total": 2})
    return limit


@traceable
def module_level(x: int) -> int:
    return x * 2


# -- plain calls: same result, now a run ----------------------------------------------


def test_plain_call_is_one_run_with_bound_inputs_and_code_attributes() -> None:
    with capture_runs() as captured:
        assert ingest("data.csv", limit=5) == 5
    run = captured.run("ingest")
    assert run.run_type == "tool"
    assert run.inputs == {"path": "data.csv", "limit": 5}
    assert run.outputs == 5
    assert run.tags == ["etl"] and run.metadata == {"team": "data"}
    assert [(e.name, e.data) for e in run.events] == [
        ("progress", {"step": 1, "total": 2}),
        ("progress", {"step": 2, "total": 2}),
    ]
    attributes = run.attributes
    assert attributes["openinference.span.kind"] == "TOOL"
    assert attributes["otel_runnables.run.type"] == "tool"
    assert attributes["code.function.name"] == f"{__name__}.ingest"
    assert attributes["code.file.path"] == __file__
    assert attributes["code.line.number"] == inspect.getsourcelines(ingest)[1]  # Python's: the decorator line


def test_defaults_are_applied_and_var_keywords_flattened() -> None:
    @traceable
    def flexible(a: int, b: int = 2, *rest: int, c: int = 3, **extra: Any) -> int:
        return a

    with capture_runs() as captured:
        flexible(1)
        flexible(1, 5, 6, 7, c=0, d=4)
    first, second = captured.runs
    assert first.inputs == {"a": 1, "b": 2, "c": 3}
    assert second.inputs == {"a": 1, "b": 5, "rest": [6, 7], "c": 0, "d": 4}


async def test_coroutine_function() -> None:
    @traceable(name="fetch")
    async def fetch(url: str) -> str:
        await adispatch_custom_event("fetched", {"url": url})
        return url.upper()

    assert inspect.iscoroutinefunction(fetch)
    with capture_runs() as captured:
        assert await fetch("a") == "A"
    run = captured.run("fetch")
    assert (run.inputs, run.outputs, [e.name for e in run.events]) == ({"url": "a"}, "A", ["fetched"])


def test_generator_function_streams_within_one_run() -> None:
    @traceable
    def words(text: str) -> Any:
        for word in text.split():
            dispatch_custom_event("word", word)
            yield word

    assert inspect.isgeneratorfunction(words)
    with capture_runs() as captured:
        assert list(words("a b c")) == ["a", "b", "c"]
    run = captured.run("words")
    assert run.stream_chunks == 3 and run.outputs == ["a", "b", "c"]
    assert [e.data for e in run.events] == ["a", "b", "c"]


async def test_async_generator_function_streams_within_one_run() -> None:
    @traceable
    async def ticks(n: int) -> Any:
        for i in range(n):
            await adispatch_custom_event("tick", i)
            yield [i]

    assert inspect.isasyncgenfunction(ticks)
    with capture_runs() as captured:
        assert [chunk async for chunk in ticks(3)] == [[0], [1], [2]]
    run = captured.run("ticks")
    assert run.stream_chunks == 3 and run.outputs == [[0], [1], [2]]
    assert [e.data for e in run.events] == [0, 1, 2]


class Billing:
    rate = 2

    def __init__(self, owner: str) -> None:
        self.owner = owner

    @traceable(run_type="tool")
    def charge(self, amount: int, *, currency: str = "EUR") -> str:
        return f"{self.owner}:{amount * self.rate}{currency}"

    @traceable
    @classmethod
    def for_owner(cls, owner: str) -> Billing:
        return cls(owner)

    @traceable
    @staticmethod
    def tax(amount: int) -> int:
        return amount // 10

    @traceable
    async def refund(self, amount: int) -> int:
        return -amount


async def test_methods_classmethods_and_staticmethods_leave_self_out() -> None:
    with capture_runs() as captured:
        billing = Billing.for_owner("ann")
        assert billing.charge(3) == "ann:6EUR"
        assert Billing.charge(billing, 4, currency="USD") == "ann:8USD"  # unbound, through the class
        assert (Billing.tax(50), billing.tax(60)) == (5, 6)
        assert await billing.refund(2) == -2
    names = [(run.name, run.inputs) for run in captured.runs]
    assert names == [
        ("Billing.for_owner", {"owner": "ann"}),
        ("Billing.charge", {"amount": 3, "currency": "EUR"}),
        ("Billing.charge", {"amount": 4, "currency": "USD"}),
        ("Billing.tax", {"amount": 50}),
        ("Billing.tax", {"amount": 60}),
        ("Billing.refund", {"amount": 2}),
    ]


def test_a_class_traces_its_public_methods_only() -> None:
    @traceable(tags=["billing"])
    class Service:
        def __init__(self) -> None:
            self.calls = 0

        def __len__(self) -> int:
            return self.calls

        def _helper(self) -> int:
            return 1

        def quote(self, n: int) -> int:
            self.calls += 1
            return n + self._helper()

        @classmethod
        def create(cls) -> Service:
            return cls()

        @staticmethod
        def version() -> str:
            return "1"

        @traceable(name="custom", run_type="tool")
        def kept(self) -> str:
            return "kept"

        async def later(self) -> int:
            return 0

        def rows(self) -> Any:
            yield from (1, 2)

    assert inspect.isclass(Service)  # still the class itself
    with capture_runs() as captured:
        service = Service.create()
        service.quote(1)
        len(service)
        Service.version()
        service.kept()
        asyncio.run(service.later())
        list(service.rows())
    assert [run.name for run in captured.runs] == [
        "Service.create",
        "Service.quote",
        "Service.version",
        "custom",
        "Service.later",
        "Service.rows",
    ]
    assert captured.run("custom").run_type == "tool"  # its own decorator wins
    assert captured.run("Service.quote").tags == ["billing"]


async def test_callable_objects_and_partials() -> None:
    class Scaler:
        def __call__(self, x: int, factor: int = 3) -> int:
            return x * factor

    class AsyncScaler:
        async def __call__(self, x: int) -> int:
            return x * 4

    scaler, async_scaler = traceable(Scaler()), traceable(AsyncScaler())
    square = traceable(functools.partial(pow, exp=2))
    with capture_runs() as captured:
        assert scaler(2) == 6 and await async_scaler(2) == 8 and square(3) == 9
    assert [(run.name, run.inputs) for run in captured.runs] == [
        ("Scaler", {"x": 2, "factor": 3}),
        ("AsyncScaler", {"x": 2}),
        ("pow", {"base": 3, "exp": 2, "mod": None}),
    ]


def test_exceptions_propagate_unchanged_and_mark_the_span() -> None:
    error = KeyError("missing")

    @traceable
    def fails(x: int) -> int:
        raise error

    with capture_runs() as captured, pytest.raises(KeyError) as raised:
        fails(1)
    assert raised.value is error
    run = captured.run("fails")
    assert run.error == "KeyError: 'missing'"
    assert run.span.status.status_code is StatusCode.ERROR
    assert [e.name for e in run.span.events] == ["exception"]


def test_bad_arguments_raise_as_before() -> None:
    def original(a: int) -> int:
        return a

    traced = traceable(original)
    with pytest.raises(TypeError) as expected:
        original(1, 2)  # type: ignore[call-arg]
    with capture_runs(), pytest.raises(TypeError) as got:
        traced(1, 2)  # type: ignore[call-arg]
    assert str(got.value) == str(expected.value)


# -- what is recorded: options -----------------------------------------------------------


def test_processors_redact_what_is_recorded_but_not_the_call() -> None:
    def redact(inputs: dict[str, Any]) -> dict[str, Any]:
        return {**inputs, "card": "****"}

    @traceable(process_inputs=redact, process_outputs=lambda out: {"ok": out["ok"]})
    def pay(card: str, amount: int) -> dict[str, Any]:
        return {"ok": True, "receipt": card[-4:]}

    handler = make_recorder(BaseCallbackHandler)
    with capture_runs() as captured:
        assert pay("4111111111111111", 5) == {"ok": True, "receipt": "1111"}
        pay.invoke({"card": "4111111111111111", "amount": 1}, {"callbacks": [handler]})
    for run in captured.runs:
        assert run.inputs["card"] == "****" and run.outputs == {"ok": True}
        assert "4111" not in json.dumps(dict(run.attributes))
    start, end = handler.records
    assert start["inputs"]["card"] == "****" and end["outputs"] == {"ok": True}


def test_a_failing_processor_records_a_placeholder_and_the_call_goes_on(caplog: Any) -> None:
    @traceable(process_inputs=lambda inputs: 1 / 0)
    def secret(password: str) -> str:
        return "done"

    with capture_runs() as captured:
        assert secret("hunter2") == "done"
    assert captured.run("secret").inputs == "<process_inputs failed: ZeroDivisionError>"
    assert "hunter2" not in json.dumps(dict(captured.run("secret").attributes))
    assert "process_inputs of 'secret' raised ZeroDivisionError" in caplog.text


def test_capture_off_records_no_payloads() -> None:
    @traceable(capture_input=False, capture_output=False)
    def private(secret: str) -> str:
        return secret

    with capture_runs() as captured:
        assert private("s3cr3t") == "s3cr3t"
    run = captured.run("private")
    assert run.inputs == {} and run.outputs is None
    assert "s3cr3t" not in json.dumps(dict(run.attributes))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"run_type": ""}, "run_type must be a non-empty str"),
        ({"name": 3}, "name must be a non-empty str"),
        ({"tags": "etl"}, "tags must be a list of str"),
        ({"tags": [1]}, "tags must be a list of str"),
        ({"metadata": ["x"]}, "metadata must be a dict with str keys"),
        ({"capture_input": "no"}, "capture_input must be a bool"),
        ({"process_outputs": "upper"}, "process_outputs must be a callable"),
    ],
)
def test_bad_options_are_typed_errors_naming_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        traceable(**options)


def test_decorating_a_non_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="traceable expects a function, method or class, got int: 5"):
        traceable(5)


# -- nothing about the callable changes ------------------------------------------------------


def test_signature_docstring_and_wraps_attributes_are_the_originals() -> None:
    original = ingest.__wrapped__
    assert inspect.signature(ingest) == inspect.signature(original)
    assert ingest.__doc__ == "Read up to ``limit`` rows of ``path``."
    for attribute in functools.WRAPPER_ASSIGNMENTS:
        assert getattr(ingest, attribute) == getattr(original, attribute)
    assert ingest.__dict__ is original.__dict__
    assert inspect.isfunction(ingest) and not inspect.iscoroutinefunction(ingest)
    assert inspect.signature(Billing.charge) == inspect.signature(Billing.charge.__wrapped__)
    assert list(inspect.signature(Billing("x").charge).parameters) == ["amount", "currency"]


def test_module_level_functions_pickle_and_copy_as_themselves() -> None:
    assert pickle.loads(pickle.dumps(module_level)) is module_level
    assert copy.copy(module_level) is module_level and copy.deepcopy(module_level) is module_level
    billing = Billing("ann")
    restored = pickle.loads(pickle.dumps(billing.charge))
    assert restored(1) == "ann:2EUR"


def test_decorated_callables_are_runnables() -> None:
    assert isinstance(ingest, Runnable) and isinstance(ingest, TracedFunction)
    assert isinstance(Billing("x").charge, Runnable)
    assert ingest.get_name() == "ingest" and ingest.run_type == "tool"
    assert "ingest" in repr(ingest)


# -- nesting ---------------------------------------------------------------------------------


def test_nests_under_a_run_and_parents_runs_it_calls() -> None:
    leaf = RunnableLambda(lambda x: x + 1).with_config(run_name="leaf")

    @traceable
    def middle(x: int) -> int:
        return leaf.invoke(x) + module_level(x)

    root = RunnableLambda(lambda x: middle(x)).with_config(run_name="root")
    with capture_runs() as captured:
        assert root.invoke(1) == 4
    assert captured.tree() == "root\n  middle\n    leaf\n    module_level"
    spans = {s.name: s for s in captured.spans}
    assert spans["middle"].parent is not None
    assert spans["middle"].parent.span_id == spans["root"].context.span_id


def test_nests_under_a_foreign_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    web = provider.get_tracer("web.framework")
    with capture_runs() as captured, web.start_as_current_span("GET /ingest") as request:
        ingest("x.csv")
    run = captured.run("ingest")
    assert run.parent_id is None  # no parent run, but a parent span
    assert run.span.parent is not None
    assert run.span.parent.span_id == request.get_span_context().span_id
    assert run.span.context.trace_id == request.get_span_context().trace_id
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /ingest"]


def test_nests_under_a_foreign_span_inside_a_run() -> None:
    user = TracerProvider().get_tracer("user")

    @traceable
    def outer() -> int:
        with user.start_as_current_span("db.query") as query:
            module_level(1)
            return query.get_span_context().span_id

    with capture_runs() as captured:
        query_span_id = outer()
    inner = captured.run("module_level")
    assert inner.parent_id == captured.run("outer").id
    assert inner.span.parent is not None and inner.span.parent.span_id == query_span_id


def test_handlers_see_chain_callbacks_with_the_run_type() -> None:
    handler = make_recorder(BaseCallbackHandler)
    ingest.invoke({"path": "a.csv"}, {"callbacks": [handler], "tags": ["call"], "metadata": {"k": 1}})
    start = handler.records[0]
    assert start["cb"] == "on_chain_start" and start["name"] == "ingest"
    assert start["inputs"] == {"path": "a.csv", "limit": 100}
    assert start["run_type"] == "tool"
    assert start["tags"] == ["call", "etl"] and start["metadata"] == {"k": 1, "team": "data"}
    assert [r["cb"] for r in handler.records] == [
        "on_chain_start",
        "on_custom_event",
        "on_custom_event",
        "on_chain_end",
    ]
    assert handler.records[-1]["outputs"] == 100


def test_handlers_see_errors() -> None:
    @traceable
    def boom() -> None:
        raise ValueError("no")

    handler = make_recorder(BaseCallbackHandler)
    with pytest.raises(ValueError):
        boom.invoke({}, {"callbacks": [handler]})
    assert [r["cb"] for r in handler.records] == ["on_chain_start", "on_chain_error"]


# -- the Runnable side -------------------------------------------------------------------


def test_invoke_maps_a_dict_to_keyword_arguments_and_a_value_to_the_single_parameter() -> None:
    @traceable
    def takes_data(data: Any) -> Any:
        return data

    assert ingest.invoke({"path": "p", "limit": 3}) == 3
    assert ingest.invoke("p") == 100  # the only required parameter
    assert takes_data.invoke({"data": 1}) == 1
    assert takes_data.invoke({"other": 1}) == {"other": 1}  # not its arguments: the dict itself
    assert takes_data.invoke(5) == 5
    assert Billing("bo").charge.invoke({"amount": 2}) == "bo:4EUR"
    assert Billing("bo").charge.invoke(1) == "bo:2EUR"
    assert Billing.for_owner.invoke("cy").owner == "cy"
    assert Billing.tax.invoke(100) == 10


def test_invoke_with_a_value_for_several_parameters_is_a_clear_type_error() -> None:
    @traceable
    def pair(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match=r"pair.invoke\(\) takes a dict of arguments \{'a', 'b'\}, got int"):
        pair.invoke(1)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'b'"):
        pair.invoke({"a": 1})


def test_invoke_config_names_the_run_and_is_inherited() -> None:
    with capture_runs() as captured:
        ingest.invoke("p", {"run_name": "renamed", "tags": ["t"]})
    run = captured.run("renamed")
    assert run.tags == ["t", "etl"]


async def test_ainvoke_for_every_kind() -> None:
    @traceable
    async def double(x: int) -> int:
        return 2 * x

    @traceable
    async def agen(n: int) -> Any:
        for i in range(n):
            yield str(i)

    @traceable
    def gen(n: int) -> Any:
        yield from (str(i) for i in range(n))

    with capture_runs() as captured:
        assert await double.ainvoke(2) == 4
        assert await agen.ainvoke(3) == ["0", "1", "2"]
        assert await ingest.ainvoke({"path": "a"}) == 100
        assert gen.invoke(3) == ["0", "1", "2"]
        assert await gen.ainvoke(2) == ["0", "1"]
    assert [run.name for run in captured.runs] == ["double", "agen", "ingest", "gen", "gen"]
    with pytest.raises(TypeError, match="double is async: use `ainvoke`"):
        double.invoke(1)


def test_batch_and_pipe() -> None:
    with capture_runs() as captured:
        assert ingest.batch([{"path": "a"}, {"path": "b", "limit": 2}]) == [100, 2]
        assert (ingest | RunnableLambda(lambda n: n + 1)).invoke("a") == 101
        assert ({"path": lambda x: x} | ingest).invoke("z") == 100
        assert (module_level | module_level).invoke(1) == 4
    assert len(captured.runs_named("ingest")) == 4
    assert "RunnableSequence\n  ingest" in captured.tree()


def test_stream_of_a_generator_yields_its_chunks() -> None:
    @traceable
    def count(n: int) -> Any:
        yield from range(n)

    assert list(count.stream(3)) == [0, 1, 2]
    assert list(ingest.stream("a")) == [100]


async def test_astream_events_gives_the_run_type_events_and_custom_events() -> None:
    events = [(e["event"], e["name"]) async for e in ingest.astream_events({"path": "a"}, version="v2")]
    assert events == [
        ("on_tool_start", "ingest"),
        ("on_custom_event", "progress"),
        ("on_custom_event", "progress"),
        ("on_tool_end", "ingest"),
    ]


async def test_astream_events_of_generators_stream_chunks() -> None:
    @traceable
    def sync_chunks(n: int) -> Any:
        yield from ("a" * (i + 1) for i in range(n))

    @traceable
    async def async_chunks(n: int) -> Any:
        for i in range(n):
            yield i

    for traced, expected in ((sync_chunks, ["a", "aa"]), (async_chunks, [0, 1])):
        events = [e async for e in traced.astream_events(2, version="v2")]
        assert [e["event"] for e in events] == [
            "on_chain_start",
            "on_chain_stream",
            "on_chain_stream",
            "on_chain_end",
        ]
        assert [e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream"] == expected


# -- inputs: the same as inspect's binding ----------------------------------------------------


def _reference_inputs(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = inspect.signature(func).bind(*args, **kwargs)
    bound.apply_defaults()
    inputs: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = inspect.signature(func).parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            inputs.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                inputs[name] = value
        else:
            inputs[name] = value
    return inputs


def _shapes(a: int, /, b: int = 1, *more: int, c: int, d: int = 4, **extra: int) -> None: ...


@given(
    positional=st.lists(st.integers(), min_size=1, max_size=4),
    c=st.integers(),
    d=st.one_of(st.none(), st.integers()),
    extra=st.dictionaries(st.sampled_from(["x", "y", "z"]), st.integers(), max_size=3),
)
def test_recorded_inputs_match_inspect_binding(
    positional: list[int], c: int, d: int | None, extra: dict[str, int]
) -> None:
    kwargs: dict[str, Any] = {"c": c, **extra}
    if d is not None:
        kwargs["d"] = d
    shape = CallShape.of(_shapes, "_shapes", drop_first=False)
    assert shape.inputs(tuple(positional), kwargs) == _reference_inputs(_shapes, tuple(positional), kwargs)
