"""What a traced callable's parameters look like, worked out once at
decoration time, so that each call only zips names with values.

A call's recorded inputs are its bound arguments: parameter names to values,
defaults applied, ``**kwargs`` flattened in, ``self``/``cls`` left out.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["CallShape"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NO_DEFAULT = inspect.Parameter.empty


class CallShape:
    """Parameter names, defaults and invoke mapping of one signature."""

    __slots__ = (
        "label",
        "positional",
        "defaults",
        "var_positional",
        "keyword_names",
        "required_keywords",
        "var_keyword",
        "single",
    )

    def __init__(self, label: str, parameters: list[inspect.Parameter] | None) -> None:
        self.label = label
        self.var_positional = "args"
        self.var_keyword = parameters is None
        if parameters is None:  # no signature (some builtins): record what was passed
            self.positional: tuple[str, ...] = ()
            self.defaults: tuple[tuple[str, Any], ...] = ()
            self.keyword_names: frozenset[str] = frozenset()
            self.required_keywords: frozenset[str] = frozenset()
            self.single: str | None = None
            return
        self.positional = tuple(p.name for p in parameters if p.kind in _POSITIONAL)
        self.defaults = tuple((p.name, p.default) for p in parameters if p.default is not _NO_DEFAULT)
        for p in parameters:
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                self.var_positional = p.name
            elif p.kind is inspect.Parameter.VAR_KEYWORD:
                self.var_keyword = True
        named = [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        self.keyword_names = frozenset(p.name for p in named if p.kind is not p.POSITIONAL_ONLY)
        self.required_keywords = frozenset(
            p.name for p in named if p.default is _NO_DEFAULT and p.kind is not p.POSITIONAL_ONLY
        )
        self.single = _single_parameter(named)

    @classmethod
    def of(cls, func: Callable[..., Any], label: str, *, drop_first: bool) -> CallShape:
        """The shape of ``func``; ``drop_first`` leaves out a bound ``self``/``cls``."""
        try:
            parameters = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):
            return cls(label, None)
        if drop_first and parameters and parameters[0].kind in _POSITIONAL:
            parameters = parameters[1:]
        return cls(label, parameters)

    # -- per call: keep these lean ------------------------------------------

    def inputs(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The bound arguments of one call, by name."""
        positional = self.positional
        inputs = dict(zip(positional, args, strict=False))
        if len(args) > len(positional):
            inputs[self.var_positional] = args[len(positional) :]
        if kwargs:
            inputs.update(kwargs)
        for name, default in self.defaults:
            if name not in inputs:
                inputs[name] = default
        return inputs

    # -- invoke: one input value to call arguments --------------------------

    def arguments_for(self, value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``invoke(value)``'s call arguments: a dict of parameter names becomes
        keyword arguments; any other value goes to the single parameter."""
        if isinstance(value, Mapping) and self._binds_as_keywords(value):
            return (), dict(value)
        if self.single is not None:
            return (value,), {}
        if isinstance(value, Mapping):
            return (), dict(value)  # the call itself names what is missing or unexpected
        raise TypeError(
            f"{self.label}.invoke() takes a dict of arguments {self._parameter_list()}, "
            f"got {type(value).__name__}: {value!r:.80}"
        )

    def _binds_as_keywords(self, value: Mapping[Any, Any]) -> bool:
        if not all(isinstance(key, str) for key in value):
            return False
        if not self.required_keywords.issubset(value.keys()):
            return False
        return self.var_keyword or self.keyword_names.issuperset(value.keys())

    def _parameter_list(self) -> str:
        names = sorted(self.keyword_names)
        return "{" + ", ".join(repr(n) for n in names) + "}" if names else "(it takes no arguments)"


def _single_parameter(named: list[inspect.Parameter]) -> str | None:
    """The parameter a non-dict invoke input goes to: the only required
    positional one, else the only parameter there is."""
    required = [p for p in named if p.default is _NO_DEFAULT]
    if len(required) == 1:
        only = required[0]
    elif len(named) == 1:
        only = named[0]
    else:
        return None
    return only.name if only.kind in _POSITIONAL else None
