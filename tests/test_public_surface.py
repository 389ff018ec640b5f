"""The public surface is what README's "What is public" lists: every other
module of the package is underscored machinery."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing

import otel_runnables

PUBLIC_MODULES = {"callbacks", "progress", "testing", "web", "integrations"}


def test_only_the_documented_modules_are_public() -> None:
    top_level = {info.name for info in pkgutil.iter_modules(otel_runnables.__path__)}
    assert {name for name in top_level if not name.startswith("_")} == PUBLIC_MODULES


def test_every_exported_name_resolves() -> None:
    for name in otel_runnables.__all__:
        assert getattr(otel_runnables, name) is not None, name


def test_the_public_modules_import_and_export_what_they_list() -> None:
    for name in PUBLIC_MODULES - {"integrations"}:
        module = importlib.import_module(f"otel_runnables.{name}")
        for exported in getattr(module, "__all__", ()):
            assert hasattr(module, exported), f"otel_runnables.{name}.{exported}"
    assert otel_runnables.callbacks.__all__ == ["AsyncCallbackHandler", "BaseCallbackHandler"]


def _public_methods(cls: type) -> list[tuple[str, object]]:
    """A class's own public methods, and the operators and ``__init__`` users call."""
    found = []
    for attribute, member in vars(cls).items():
        if attribute.startswith("_") and attribute not in ("__init__", "__call__", "__or__", "__ror__"):
            continue
        function = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        if inspect.isfunction(function):
            found.append((attribute, function))
    return found


def test_the_public_annotations_resolve() -> None:
    """``typing.get_type_hints`` works on every public function, class and method
    (what tools that read annotations call, documentation generators among them), on
    every supported Python: no name in them is left to ``TYPE_CHECKING`` imports."""
    unresolved = []
    for module_name in ("otel_runnables", "otel_runnables.progress", "otel_runnables.testing"):
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            targets: list[tuple[str, object]] = [(name, value)]
            if inspect.isclass(value):
                targets += [(f"{name}.{attribute}", method) for attribute, method in _public_methods(value)]
            for label, target in targets:
                if not (inspect.isfunction(target) or inspect.isclass(target)):
                    continue
                try:
                    typing.get_type_hints(target)
                except NameError as exc:
                    unresolved.append(f"{module_name}.{label}: {exc}")
    assert unresolved == []
