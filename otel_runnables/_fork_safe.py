"""Module locks that a forked child gets free.

A child forked while another thread holds a lock inherits it held, by a thread
the child does not have: the child's first use of it would wait forever. A
module names its locks here once, and a child gets new ones in their place.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["renew_in_child"]

_renewals: list[tuple[MutableMapping[str, Any], str, Callable[[], Any]]] = []


def renew_in_child(
    namespace: MutableMapping[str, Any], name: str, new_lock: Callable[[], Any] = threading.Lock
) -> None:
    """In a forked child, ``namespace[name]`` (a module's ``globals()``) is ``new_lock()``."""
    _renewals.append((namespace, name, new_lock))


def _renew_all() -> None:
    for namespace, name, new_lock in _renewals:
        namespace[name] = new_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_all)
