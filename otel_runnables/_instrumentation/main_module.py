"""Targets in the module Python runs as ``__main__``.

``python -m pkg.mod`` and ``python path/to/mod.py`` run the module's code as
``__main__``, never as ``pkg.mod``: an import hook for ``pkg.mod`` would wait
forever. A target naming that module (or ``__main__`` itself) is patched in
``__main__`` instead, as soon as the module's code has defined it: on Python
3.12+ through ``sys.monitoring``, which reports the main module's lines while
they run (and nothing else, so the program runs at full speed). Python 3.10
and 3.11 have no such hook without tracing every call of the program: there
the target is refused with the fix.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["MAIN", "is_main_module", "main_file", "watch_main"]

MAIN = "__main__"
_TOOL_NAME = "otel_runnables"
# options of the interpreter that take the next argument as their value
_OPTIONS_WITH_VALUE = frozenset({"-W", "-X", "--check-hash-based-pycs"})


def _command() -> tuple[str, str] | None:
    """("module", name) for ``python -m name``, ("script", path) for ``python path``, else None."""
    argv = list(getattr(sys, "orig_argv", []))[1:]
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "-m" and index + 1 < len(argv):
            return "module", argv[index + 1]
        if arg.startswith("-m") and len(arg) > 2 and not arg.startswith("--"):
            return "module", arg[2:]
        if arg.startswith("-c") or arg == "-":
            return None
        if arg in _OPTIONS_WITH_VALUE:
            index += 2
            continue
        if arg.startswith("-"):
            index += 1
            continue
        return "script", arg
    return None


def _origin(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = None if spec is None else spec.origin
    return os.path.realpath(origin) if origin and os.path.exists(origin) else None


def main_file() -> str | None:
    """The file this process runs as ``__main__``, from its command line."""
    command = _command()
    if command is None:
        return None
    kind, value = command
    if kind == "script":
        return os.path.realpath(value) if os.path.exists(value) else None
    return _origin(value)


def is_main_module(module: str) -> bool:
    """Whether ``module`` is ``__main__`` or the module this process runs as ``__main__``."""
    if module == MAIN:
        return True
    command = _command()
    if command is None:
        return False
    if command == ("module", module):
        return True
    main = main_file()
    return main is not None and _origin(module) == main


def watch_main(on_line: Callable[[], bool]) -> bool:
    """Call ``on_line()`` before each line of the main module's top-level code
    until it returns True; False when this Python cannot (before 3.12)."""
    monitoring: Any = getattr(sys, "monitoring", None)
    main = main_file()
    if monitoring is None or main is None:
        return False
    tool = next((tool for tool in (3, 4) if monitoring.get_tool(tool) is None), None)
    if tool is None:
        return False  # both free tool ids are taken (debuggers and coverage use others)
    events = monitoring.events
    monitoring.use_tool_id(tool, _TOOL_NAME)
    watched: list[Any] = []

    def stop() -> None:
        monitoring.set_events(tool, 0)
        for code in watched:
            monitoring.set_local_events(tool, code, 0)
        monitoring.register_callback(tool, events.PY_START, None)
        monitoring.register_callback(tool, events.LINE, None)
        monitoring.free_tool_id(tool)

    def started(code: Any, offset: int) -> Any:
        if code.co_name == "<module>" and os.path.realpath(code.co_filename) == main:
            watched.append(code)
            monitoring.set_events(tool, 0)
            monitoring.set_local_events(tool, code, events.LINE)
            return None
        return monitoring.DISABLE  # once per code object

    def line(code: Any, line_number: int) -> Any:
        if code not in watched:
            return monitoring.DISABLE
        if on_line():
            stop()
        return None

    monitoring.register_callback(tool, events.PY_START, started)
    monitoring.register_callback(tool, events.LINE, line)
    monitoring.set_events(tool, events.PY_START)
    return True
