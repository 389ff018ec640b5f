"""`instrument` / `uninstrument`: trace code you do not edit, by name.

A target is ``"package.module:qualified.name"``: a function, a method
(``Class.method``) or a class (its public methods). If the module is already
imported it is patched now; otherwise when it is first imported (a wrapt
post-import hook), so code that later does ``from package.module import f``
gets the traced ``f``. Code that took a reference before the patch keeps the
original: instrument early. A target in the module running as ``__main__``
is patched there (see ``main_module``). A target still unresolved when the
process exits is reported once.
"""

from __future__ import annotations

import atexit
import importlib.util
import inspect
import logging
import re
import sys
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import wrapt
from typing_extensions import Unpack  # typing's own from Python 3.11; get_type_hints() needs it

from otel_runnables._errors import OtelRunnablesError
from otel_runnables._fork_safe import renew_in_child
from otel_runnables._instrumentation.decorator import (
    TracingKeywords,
    TracingOptions,
    is_traced,
    method_options,
    public_methods,
    trace_callable,
    tracing_options,
)
from otel_runnables._instrumentation.main_module import MAIN, is_main_module, watch_main

__all__ = ["InstrumentationError", "instrument", "instrumented_targets", "uninstrument"]

_logger = logging.getLogger("otel_runnables._instrumentation")

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_TARGET = re.compile(rf"^(?P<module>{_DOTTED}):(?P<path>{_DOTTED})$")


class InstrumentationError(OtelRunnablesError, LookupError):
    """A target of `instrument`/`uninstrument` is malformed, cannot be found,
    cannot be traced, or is not (or already) instrumented."""


@dataclass(slots=True)
class _Patch:
    """One attribute replaced: undone only if it still holds our replacement."""

    owner: Any
    attribute: str
    original: Any
    replacement: Any
    owned: bool
    """Whether ``owner`` defined the attribute itself (else it was inherited)."""

    def undo(self) -> None:
        if vars(self.owner).get(self.attribute) is not self.replacement:
            _logger.warning("%s.%s was replaced by someone else; left as it is", self.owner, self.attribute)
        elif self.owned:
            setattr(self.owner, self.attribute, self.original)
        else:
            delattr(self.owner, self.attribute)


@dataclass(slots=True, eq=False)
class _Instrumentation:
    target: str
    module: str
    path: str
    options: TracingOptions
    patches: list[_Patch] = field(default_factory=list)
    active: bool = True
    failed: bool = False
    """Its module was found but the target could not be patched (reported then)."""


_registry: dict[str, _Instrumentation] = {}
_lock = threading.RLock()
renew_in_child(globals(), "_lock", threading.RLock)
_pending_main: list[_Instrumentation] = []  # targets in __main__, not defined there yet
_watching_main = False
_exit_check = False


def instrument(target: str, **options: Unpack[TracingKeywords]) -> None:
    """Trace ``target`` (``"package.module:Class.method"``) as `traceable`
    would, with the same options, now or when its module is first imported.

    Raises InstrumentationError when the target is malformed, its module does
    not exist, its attribute is missing or not callable (when the module is
    already imported), or it is instrumented already.
    """
    module, path = _parse(target)
    entry = _Instrumentation(target, module, path, tracing_options("instrument", options))
    with _lock:
        if target in _registry:
            raise InstrumentationError(f"{target!r} is already instrumented; uninstrument it first")
        _check_at_exit()
        if is_main_module(module):
            _instrument_in_main(entry)
            _registry[target] = entry
            return
        loaded = sys.modules.get(module)
        if loaded is not None:
            entry.patches = _apply(entry, loaded)
            _registry[target] = entry
            return
        if not _module_exists(module):
            raise InstrumentationError(f"cannot instrument {target!r}: no module named {module!r}")
        _registry[target] = entry
    wrapt.register_post_import_hook(lambda loaded_module: _apply_on_import(entry, loaded_module), module)


def uninstrument(target: str) -> None:
    """Undo `instrument(target)`: restore the originals, or cancel the patch
    if the module was not imported yet."""
    with _lock:
        entry = _registry.pop(target, None)
        if entry is None:
            raise InstrumentationError(f"{target!r} is not instrumented")
        entry.active = False
        for patch in reversed(entry.patches):
            patch.undo()
        entry.patches.clear()


def instrumented_targets() -> list[str]:
    """The targets instrumented now (applied or waiting for their module)."""
    with _lock:
        return list(_registry)


# -- machinery ----------------------------------------------------------------------


def _parse(target: object) -> tuple[str, str]:
    if not isinstance(target, str):
        raise InstrumentationError(f"an instrument target must be a str, got {type(target).__name__}")
    match = _TARGET.match(target)
    if match is None:
        raise InstrumentationError(
            f"instrument target must look like 'package.module:Class.method', got {target!r}"
        )
    return match["module"], match["path"]


def _instrument_in_main(entry: _Instrumentation) -> None:
    """Patch the target in ``__main__`` now if it is defined, else as soon as it is."""
    global _watching_main
    main = sys.modules[MAIN]
    if _defined(main, entry.path):
        entry.patches = _apply(entry, main)
        return
    _pending_main.append(entry)
    if _watching_main:
        return
    if watch_main(_patch_pending_main):
        _watching_main = True
        return
    _pending_main.remove(entry)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if entry.module == MAIN:
        fix = "name the target by its module and import that module from a launcher"
    else:
        launcher = f"import {entry.module} as m; m.{entry.path}()"
        fix = f'start it from a launcher that imports it: python -c "{launcher}"'
    raise InstrumentationError(
        f"cannot instrument {entry.target!r}: it runs as __main__ and has not defined {entry.path!r} yet, "
        f"and Python {version} gives no hook to patch it as it is defined (3.12+ does). "
        f"Run it with Python 3.12+, or {fix}"
    )


def _defined(module: ModuleType, path: str) -> bool:
    try:
        wrapt.resolve_path(module, path)
    except AttributeError:
        return False
    return True


def _patch_pending_main() -> bool:
    """Before each top-level line of __main__: patch what it has defined by now;
    True once nothing is pending."""
    global _watching_main
    with _lock:
        main = sys.modules[MAIN]
        for entry in list(_pending_main):
            if not entry.active:
                _pending_main.remove(entry)
            elif _defined(main, entry.path):
                _pending_main.remove(entry)
                try:
                    entry.patches = _apply(entry, main)
                except InstrumentationError as exc:
                    entry.failed = True
                    _logger.warning("otel_runnables could not instrument in __main__: %s", exc)
        if _pending_main:
            return False
        _watching_main = False
        return True


def _check_at_exit() -> None:
    global _exit_check
    if not _exit_check:
        _exit_check = True
        atexit.register(_report_unresolved)


def _report_unresolved() -> None:
    """One warning per target that was never patched (its module never imported or
    the target never defined), so a misnamed target is not silent."""
    with _lock:
        entries = [e for e in _registry.values() if e.active and not e.patches and not e.failed]
    for entry in entries:
        where = (
            f"{entry.path!r} was never defined in __main__"
            if entry in _pending_main or is_main_module(entry.module)
            else f"module {entry.module!r} was never imported"
        )
        _logger.warning(
            "otel_runnables instrumented nothing for %r: %s (is it the module you run, and its name?)",
            entry.target,
            where,
        )


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def _apply_on_import(entry: _Instrumentation, module: ModuleType) -> None:
    # an import must never fail because of tracing: report and go on
    with _lock:
        if not entry.active or entry.patches:
            return
        try:
            entry.patches = _apply(entry, module)
        except InstrumentationError as exc:
            entry.failed = True
            _logger.warning("otel_runnables could not instrument on import: %s", exc)


def _apply(entry: _Instrumentation, module: ModuleType) -> list[_Patch]:
    target = entry.target
    try:
        owner, attribute, original = wrapt.resolve_path(module, entry.path)
    except AttributeError as exc:
        raise InstrumentationError(f"cannot instrument {target!r}: {entry.path!r} not found") from exc
    if is_traced(original):
        raise InstrumentationError(f"cannot instrument {target!r}: it is traced already")
    if inspect.isclass(original):
        methods = public_methods(original)
        if not methods:
            raise InstrumentationError(f"cannot instrument {target!r}: the class has no public methods")
        prefix = entry.options.name or original.__name__
        return [
            _patch(original, name, member, method_options(entry.options, member, f"{prefix}.{name}"), target)
            for name, member in methods
        ]
    return [_patch(owner, attribute, original, entry.options, target)]


def _patch(owner: Any, attribute: str, original: Any, options: TracingOptions, target: str) -> _Patch:
    try:
        replacement = trace_callable(original, options)
    except TypeError as exc:
        raise InstrumentationError(f"cannot instrument {target!r}: {exc}") from exc
    owned = attribute in vars(owner)
    setattr(owner, attribute, replacement)
    return _Patch(owner, attribute, original, replacement, owned)
