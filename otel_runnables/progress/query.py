"""The progress queries: a run tree by trace or run id, recent runs, a run's events."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from otel_runnables._errors import OtelRunnablesError
from otel_runnables.progress.backend import Backend, TraceNotFoundError
from otel_runnables.progress.http import DEFAULT_MAX_RESPONSE_BYTES, HttpOptions, check_url
from otel_runnables.progress.model import RunEvent, RunSummary, RunTree, build_tree, find_run, summarise

__all__ = [
    "BACKENDS",
    "InvalidIdError",
    "UnknownBackendError",
    "events",
    "events_not_stored",
    "get",
    "make_backend",
    "parse_id",
    "runs",
    "tree_events",
]

BACKENDS = ("local", "jaeger", "tempo")
_DEFAULT_URLS = {"jaeger": "http://localhost:16686", "tempo": "http://localhost:3200"}
_HEX = re.compile(r"^[0-9a-fA-F]{1,32}$")


class InvalidIdError(OtelRunnablesError, ValueError):
    """Not a trace id (hex, up to 32 digits) nor a run id (a UUID)."""


class UnknownBackendError(OtelRunnablesError, ValueError):
    """A backend name that is not one of ``BACKENDS``."""


def make_backend(
    name: str,
    *,
    url: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    ca_file: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
    insecure_skip_verify: bool = False,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    path: str | None = None,
) -> Backend:
    """``local`` (the embedded store at ``path``, default: this machine's), ``jaeger`` or ``tempo``
    (at ``url``, with auth ``headers``, ``timeout`` seconds for each whole request, TLS options and
    a cap on the size of an answer). Bad options raise ``InvalidOptionError`` naming them."""
    if name == "local":
        from otel_runnables.progress.local import LocalBackend

        return LocalBackend(path)
    if name not in BACKENDS:
        raise UnknownBackendError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
    options = HttpOptions(
        url=check_url(url or _DEFAULT_URLS[name]).rstrip("/"),
        headers=dict(headers or {}),
        timeout=timeout,
        ca_file=ca_file,
        client_cert=client_cert,
        client_key=client_key,
        insecure_skip_verify=insecure_skip_verify,
        max_response_bytes=max_response_bytes,
    )
    if name == "jaeger":
        from otel_runnables.progress.jaeger import JaegerBackend

        return JaegerBackend(options)
    from otel_runnables.progress.tempo import TempoBackend

    return TempoBackend(options)


def _backend(backend: str | Backend, options: Mapping[str, Any]) -> Backend:
    return make_backend(backend, **options) if isinstance(backend, str) else backend


def _run_id(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _trace_id(text: str) -> str | None:
    # Tempo shows ids without leading zeros
    return text.lower().rjust(32, "0") if _HEX.match(text) else None


def parse_id(trace_or_run_id: str) -> tuple[str | None, str | None]:
    """(run id, None) for a UUID, (None, trace id) for hex; ``InvalidIdError`` otherwise."""
    text = trace_or_run_id.strip()
    # run ids are shown with dashes; bare hex is a trace id
    run_id = _run_id(text) if "-" in text else None
    trace_id = None if run_id is not None else _trace_id(text)
    if run_id is None and trace_id is None:
        raise InvalidIdError(f"{trace_or_run_id!r} is neither a trace id (hex) nor a run id (UUID)")
    return run_id, trace_id


def get(trace_or_run_id: str, backend: str | Backend = "local", **options: Any) -> RunTree:
    """The run tree of a trace id, or the subtree of a run id (a UUID).

    Raises ``InvalidIdError`` for anything else and ``TraceNotFoundError`` when
    the backend holds no such trace or run."""
    run_id, trace_id = parse_id(trace_or_run_id)
    source = _backend(backend, options)
    if trace_id is not None:
        return build_tree(source.trace(trace_id), trace_id)
    assert run_id is not None
    found = source.trace_id_of_run(run_id)
    if found is None:
        raise TraceNotFoundError(f"no run {run_id} in the {source.name} backend")
    tree = build_tree(source.trace(found), found)
    node = find_run(tree, run_id)
    if node is None:
        raise TraceNotFoundError(f"run {run_id} is not in trace {found} of the {source.name} backend")
    return RunTree(trace_id=found, roots=(node,))


def runs(last: int = 10, backend: str | Backend = "local", **options: Any) -> list[RunSummary]:
    """The ``last`` most recently started root runs, newest first."""
    if isinstance(last, bool) or not isinstance(last, int) or last < 1:
        raise ValueError(f"last must be a positive int, got {last!r}")
    return summarise(_backend(backend, options).recent_root_runs(last))[:last]


def events(trace_or_run_id: str, backend: str | Backend = "local", **options: Any) -> list[RunEvent]:
    """The custom events of one run (a run id), or of every run in a trace (a trace id),
    in time order; each names its run (``run_id``, ``run_name``)."""
    return tree_events(get(trace_or_run_id, backend, **options))


def tree_events(tree: RunTree) -> list[RunEvent]:
    """The custom events of every run in ``tree``, in time order (ties in the
    order they happened), each naming its run."""
    found: list[RunEvent] = []
    stack = list(tree.roots)
    while stack:
        node = stack.pop()
        found += (replace(event, run_id=node.run_id, run_name=node.name) for event in node.events)
        stack.extend(node.children)
    return sorted(found, key=lambda event: event.time_ns)


def events_not_stored(tree: RunTree) -> int:
    """How many custom events of the runs in ``tree`` the store did not keep."""
    count, stack = 0, list(tree.roots)
    while stack:
        node = stack.pop()
        count += node.events_not_stored
        stack.extend(node.children)
    return count
