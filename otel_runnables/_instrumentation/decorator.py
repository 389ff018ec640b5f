"""`traceable`: one decorator that makes an existing function, method or class
traced, and a runnable, without changing how it is called.

Here: the options, and the work done once at decoration time (name, kind,
call shape, ``code.*`` attributes). The wrappers themselves are in `wrappers`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypedDict, TypeVar, overload

from typing_extensions import Unpack  # typing's own from Python 3.11; get_type_hints() needs it

from otel_runnables import _conventions as conventions
from otel_runnables._instrumentation._calls import (
    ASYNC_GENERATOR,
    COROUTINE,
    FUNCTION,
    GENERATOR,
    Processor,
    Reducer,
    Tracing,
)
from otel_runnables._instrumentation._signature import CallShape
from otel_runnables._instrumentation.wrappers import TracedFunction, TracedMethod

__all__ = [
    "TracingKeywords",
    "TracingOptions",
    "is_traced",
    "method_options",
    "public_methods",
    "trace_callable",
    "traceable",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TracingOptions:
    """What `traceable` was given; validated once."""

    name: str | None = None
    run_type: str = "chain"
    tags: Sequence[str] | None = ()  # None: no tags
    metadata: Mapping[str, Any] | None = None
    capture_input: bool = True
    capture_output: bool = True
    process_inputs: Processor | None = None
    process_outputs: Processor | None = None
    reduce: Reducer | None = None

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise TypeError(f"traceable name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.run_type, str) or not self.run_type:
            raise TypeError(f"traceable run_type must be a non-empty str, got {self.run_type!r}")
        if self.tags is None:
            object.__setattr__(self, "tags", ())
        if isinstance(self.tags, str) or not isinstance(self.tags, Sequence):
            raise TypeError(f"traceable tags must be a list of str, got {self.tags!r}")
        if not all(isinstance(t, str) for t in self.tags):
            raise TypeError(f"traceable tags must be a list of str, got {self.tags!r}")
        object.__setattr__(self, "tags", tuple(self.tags))
        if self.metadata is not None and (
            not isinstance(self.metadata, Mapping) or not all(isinstance(k, str) for k in self.metadata)
        ):
            raise TypeError(f"traceable metadata must be a dict with str keys, got {self.metadata!r}")
        for flag in ("capture_input", "capture_output"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"traceable {flag} must be a bool, got {getattr(self, flag)!r}")
        for processor in ("process_inputs", "process_outputs", "reduce"):
            value = getattr(self, processor)
            if value is not None and not callable(value):
                raise TypeError(f"traceable {processor} must be a callable, got {value!r}")


class TracingKeywords(TypedDict, total=False):
    """The options `traceable` and `instrument` take by keyword (`traceable` says
    what each does; ``tags=None`` is no tags)."""

    name: str | None
    run_type: str
    tags: Sequence[str] | None
    metadata: Mapping[str, Any] | None
    capture_input: bool
    capture_output: bool
    process_inputs: Processor | None
    process_outputs: Processor | None
    reduce: Reducer | None


_KEYWORDS = TracingKeywords.__optional_keys__


def tracing_options(caller: str, keywords: TracingKeywords) -> TracingOptions:
    """The options ``caller`` (`traceable`, `instrument`) was given by keyword, validated."""
    for keyword in keywords:
        if keyword not in _KEYWORDS:  # as Python says it for a function's own parameters
            raise TypeError(f"{caller}() got an unexpected keyword argument {keyword!r}")
    return TracingOptions(**keywords)


# -- the decorator ---------------------------------------------------------------


@overload
def traceable(target: T, /, **options: Unpack[TracingKeywords]) -> T: ...


@overload
def traceable(target: None = None, /, **options: Unpack[TracingKeywords]) -> Callable[[T], T]: ...


def traceable(target: Any = None, /, **options: Unpack[TracingKeywords]) -> Any:
    """Trace every call of a function, method or class as a run (one span).

    Bare (``@traceable``) or with options, by keyword. Works on functions,
    coroutine functions, generators, async generators, instance/class/static methods,
    and classes (every public method; dunders and ``_private`` ones are left
    alone). How the callable is called does not change: same arguments, same
    result, same exceptions (which also mark the span as failed).

    - ``name``: the run and span name (default: the function's name, or
      ``Class.method``; for a class, the prefix of its methods' names).
    - ``run_type``: ``chain`` (the default), ``tool``, ``retriever``, ... (span
      attributes ``otel_runnables.run.type`` and ``openinference.span.kind``).
    - ``tags``, ``metadata``: added to each run, inherited by its child runs.
    - ``capture_input``, ``capture_output`` (default True): False records
      nothing of the inputs (``{}``) or of the output (``None``).
    - ``process_inputs(inputs_dict)``, ``process_outputs(output)``: return what
      is recorded instead (e.g. redacted); the call itself is unaffected.
    - ``reduce(items)``: for generators, their output from the list of the
      items they yielded (default: that list, recorded as the encoder bounds
      any list); ``.invoke()`` returns the same value. Given for a class, it
      applies to its generator methods.

    The inputs recorded are the bound arguments (names to values, defaults
    applied, ``self``/``cls`` left out). Put ``@traceable`` above
    ``@classmethod``/``@staticmethod``.
    """
    tracing = tracing_options("traceable", options)
    if target is None:
        return lambda decorated: trace_callable(decorated, tracing)
    return trace_callable(target, tracing)


def trace_callable(target: Any, options: TracingOptions) -> Any:
    """`traceable` with its options already made: what ``instrument`` applies."""
    if inspect.isclass(target):
        return _trace_class(target, options)
    if not (callable(target) or isinstance(target, (classmethod, staticmethod))):
        raise TypeError(
            f"traceable expects a function, method or class, got {type(target).__name__}: {target!r:.80}"
        )
    tracing = _tracing_for(target, options)
    if options.reduce is not None and tracing.kind not in (GENERATOR, ASYNC_GENERATOR):
        raise TypeError(f"traceable reduce applies to generators only; {tracing.name!r} is a {tracing.kind}")
    return TracedFunction(target, tracing)


def is_traced(obj: Any) -> bool:
    """Whether ``obj`` (or the function of a class/static method) is already traced."""
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    return isinstance(obj, (TracedFunction, TracedMethod))


def public_methods(cls: type) -> list[tuple[str, Any]]:
    """The methods `traceable` traces on a class: its own public functions,
    classmethods and staticmethods that are not traced yet."""
    found = []
    for attribute, member in vars(cls).items():
        if attribute.startswith("_") or is_traced(member):
            continue
        function = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        if inspect.isfunction(function):
            found.append((attribute, member))
    return found


def _trace_class(cls: type, options: TracingOptions) -> type:
    prefix = options.name or cls.__name__
    for attribute, member in public_methods(cls):
        traced = trace_callable(member, method_options(options, member, f"{prefix}.{attribute}"))
        setattr(cls, attribute, traced)
    return cls


def method_options(options: TracingOptions, member: Any, name: str) -> TracingOptions:
    """A class's options for one of its methods: ``reduce`` only for generators."""
    function = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
    keeps_reduce = _kind(function) in (GENERATOR, ASYNC_GENERATOR)
    return replace(options, name=name, reduce=options.reduce if keeps_reduce else None)


# -- decoration-time work: everything a call needs, computed once --------------------


def _tracing_for(target: Any, options: TracingOptions) -> Tracing:
    function = target.__func__ if isinstance(target, (classmethod, staticmethod)) else target
    name = options.name or _default_name(function)
    plain = CallShape.of(function, name, drop_first=False)
    # wrapt hands the wrapper an instance, and the arguments without it, only
    # for what binds as a method and for classmethods
    binds_first = _binds_as_method(target) or isinstance(target, classmethod)
    bound = CallShape.of(function, name, drop_first=True) if binds_first else plain
    return Tracing(
        name=name,
        run_type=options.run_type,
        kind=_kind(function),
        tags=tuple(options.tags or ()),
        metadata=dict(options.metadata or {}),
        capture_input=options.capture_input,
        capture_output=options.capture_output,
        process_inputs=options.process_inputs,
        process_outputs=options.process_outputs,
        reduce=options.reduce,
        plain_shape=plain,
        bound_shape=bound,
        attributes=_code_attributes(function),
        handler_extra={"run_type": options.run_type},
    )


def _binds_as_method(target: Any) -> bool:
    """Whether ``target`` binds to an instance as a function does: a function, or
    a descriptor that is not bound yet (``functools.lru_cache``'s wrapper, a
    decorator class with ``__get__``), which a class attribute access binds."""
    if inspect.isfunction(target):
        return True
    if (
        isinstance(target, (staticmethod, functools.partial))
        or inspect.isclass(target)
        or inspect.isbuiltin(target)
    ):
        return False  # a partial's __get__ (3.13) warns and returns it unbound
    return hasattr(type(target), "__get__") and not hasattr(target, "__self__")


def _default_name(function: Any) -> str:
    while isinstance(function, functools.partial):
        function = function.func
    qualname = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    if not isinstance(qualname, str):
        return type(function).__name__
    # "Service.method" reads well in a trace; "test.<locals>.helper" does not
    return qualname.rpartition("<locals>.")[2]


def _kind(function: Any) -> str:
    call = function if inspect.isroutine(function) or not callable(function) else type(function).__call__
    for candidate in (function, call):
        if inspect.isasyncgenfunction(candidate):
            return ASYNC_GENERATOR
        if inspect.iscoroutinefunction(candidate):
            return COROUTINE
        if inspect.isgeneratorfunction(candidate):
            return GENERATOR
    return FUNCTION


def _code_attributes(function: Any) -> dict[str, Any]:
    try:
        unwrapped = inspect.unwrap(function)
    except ValueError:  # a __wrapped__ cycle
        unwrapped = function
    code = getattr(unwrapped, "__code__", None)
    if code is None:
        code = getattr(type(unwrapped).__call__, "__code__", None)
    qualname = getattr(unwrapped, "__qualname__", None) or type(unwrapped).__qualname__
    module = getattr(unwrapped, "__module__", None)
    attributes: dict[str, Any] = {
        conventions.CODE_FUNCTION_NAME: f"{module}.{qualname}" if module else qualname
    }
    if code is not None:
        attributes[conventions.CODE_FILE_PATH] = code.co_filename
        attributes[conventions.CODE_LINE_NUMBER] = code.co_firstlineno
    return attributes
