"""An ASGI application any web app can mount: runs, run trees and a run's live
events over server-sent events. No web framework needed; ``otel-runnables
serve`` runs it with uvicorn (the ``web`` extra).

    GET /api/runs?last=N          the `otel-runnables runs --json` rows (N: 1-1000, default 20)
    GET /api/runs/{id}            the `otel-runnables progress --json` tree of a run id or trace id
    GET /api/runs/{id}/events     text/event-stream: the v2 dicts of `follow(id)`

The event stream replays what already happened, then goes on live, and ends
with an ``end`` event. Each event is ``event: <v2 event name>``, ``id: <a
stable id>`` and ``data: <the dict as JSON>``; a client reconnecting with
``Last-Event-ID`` (every ``EventSource`` does) resumes after that event. A
comment line is sent every ``keepalive`` seconds so proxies keep the
connection open. The ``end`` event's data says how the run ended:
``{"status": "ok"}``, ``{"status": "error", "error_type": ..., "message":
...}``, ``{"status": "lost", ...}``, ``{"status": "not_found", ...}`` or
``{"status": "unavailable", ...}`` (the backend failed). Query parameters:
``since=start|now``, ``wait=<seconds>`` (for a run that has not started yet),
and the ``include_names``/``include_types``/``include_tags``/``exclude_*``
filters, each a comma-separated list. A client that disconnects releases its
follower at once.

Errors are JSON ``{"error": "..."}``: 400 for an id that is neither a run id
nor a trace id (or a bad parameter), 404 for an unknown one, 502 when the
backend cannot answer. Everything else goes to the pages (``web_pages``).

    from fastapi import FastAPI
    import otel_runnables.web

    api = FastAPI()
    api.mount("/otel", otel_runnables.web.create_app(backend="jaeger", url="http://jaeger:16686"))
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from otel_runnables import _web_pages as web_pages
from otel_runnables import progress
from otel_runnables._errors import RunFailedError, RunLostError, RunNotFoundError
from otel_runnables._web_security import guarded
from otel_runnables.progress import render
from otel_runnables.progress.backend import Backend, BackendError
from otel_runnables.progress.follow import DEFAULT_WAIT, Follow, follow

__all__ = ["DEFAULT_KEEPALIVE", "app", "create_app", "guarded"]

Scope = web_pages.Scope
Receive = web_pages.Receive
Send = web_pages.Send
App = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_KEEPALIVE = 15.0
DEFAULT_LAST = 20
MAX_LAST = 1000
MAX_WAIT = 600.0
_FILTERS = (
    "include_names",
    "include_types",
    "include_tags",
    "exclude_names",
    "exclude_types",
    "exclude_tags",
)


class _BadRequest(Exception):
    """A parameter the client got wrong (answered 400)."""


def _json_body(value: Any) -> bytes:
    return render.json_text(value, indent=None).encode()  # a run tree of any depth


async def _respond_json(send: Send, status: int, value: Any, head: bool = False) -> None:
    body = _json_body(value)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {key: value for key, value in urllib.parse.parse_qsl(raw, keep_blank_values=True)}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if bytes(key).lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _number(query: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise _BadRequest(f"{name} must be a number, got {text!r}") from None
    if not low <= value <= high:
        raise _BadRequest(f"{name} must be between {low:g} and {high:g}, got {text!r}")
    return value


def _route(scope: Scope) -> str:
    """The path inside this application, wherever it is mounted."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return path


class RunsApp:
    """The routes above, reading ``backend`` (``"local"``, ``"jaeger"``, ``"tempo"``
    with the options of ``progress.make_backend``, or a ``Backend``)."""

    def __init__(
        self,
        backend: str | Backend = "local",
        *,
        keepalive: float = DEFAULT_KEEPALIVE,
        pages: App | None = web_pages.app,
        **options: Any,
    ) -> None:
        if keepalive <= 0:
            raise ValueError(f"keepalive must be > 0 seconds, got {keepalive!r}")
        if isinstance(backend, str) and backend not in progress.BACKENDS:
            raise progress.UnknownBackendError(
                f"unknown backend {backend!r}; use one of {', '.join(progress.BACKENDS)}"
            )
        self.backend = backend
        self.options = options
        self.keepalive = keepalive
        self.pages = pages

    def _source(self) -> Backend:
        if isinstance(self.backend, str):
            return progress.make_backend(self.backend, **self.options)
        return self.backend

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = _route(scope)
        if not path.startswith("/api/"):
            if self.pages is not None:
                await self.pages(scope, receive, send)
            else:
                await _respond_json(send, 404, {"error": "not found"})
            return
        head = scope.get("method") == "HEAD"
        if scope.get("method") not in ("GET", "HEAD"):
            await _respond_json(send, 405, {"error": "read-only: GET or HEAD"})
            return
        parts = [urllib.parse.unquote(part) for part in path[len("/api/") :].split("/")]
        try:
            if parts == ["runs"] or parts == ["runs", ""]:
                await self._runs(scope, send, head)
            elif len(parts) == 2 and parts[0] == "runs" and parts[1]:
                await self._tree(parts[1], send, head)
            elif len(parts) == 3 and parts[0] == "runs" and parts[1] and parts[2] == "events":
                await self._events(parts[1], scope, receive, send, head)
            else:
                await _respond_json(send, 404, {"error": f"no such route: {path}"})
        except _BadRequest as exc:
            await _respond_json(send, 400, {"error": str(exc)}, head)
        except (progress.InvalidIdError, progress.UnknownBackendError) as exc:
            await _respond_json(send, 400, {"error": str(exc)}, head)
        except (progress.TraceNotFoundError, RunNotFoundError) as exc:
            await _respond_json(send, 404, {"error": str(exc)}, head)
        except BackendError as exc:
            await _respond_json(send, 502, {"error": str(exc)}, head)

    async def _runs(self, scope: Scope, send: Send, head: bool) -> None:
        last = int(_number(_query(scope), "last", DEFAULT_LAST, 1, MAX_LAST))
        summaries = await asyncio.to_thread(lambda: progress.runs(last, self._source()))
        await _respond_json(send, 200, [render.summary_json(summary) for summary in summaries], head)

    async def _tree(self, run_or_trace: str, send: Send, head: bool) -> None:
        tree = await asyncio.to_thread(lambda: progress.get(run_or_trace, self._source()))
        await _respond_json(send, 200, render.tree_json(tree), head)

    # -- the event stream -----------------------------------------------------------------

    def _follow(self, run_or_trace: str, query: Mapping[str, str]) -> Follow:
        since = query.get("since", "start")
        if since not in ("start", "now"):
            raise _BadRequest(f'since must be "start" or "now", got {since!r}')
        wait = _number(query, "wait", DEFAULT_WAIT, 0, MAX_WAIT)
        filters: dict[str, Any] = {
            name: [item for item in query[name].split(",") if item] for name in _FILTERS if name in query
        }
        options = dict(self.options)
        if "timeout" in options:  # progress.get's timeout is each request's: follow calls it so
            options["request_timeout"] = options.pop("timeout")
        return follow(run_or_trace, backend=self.backend, since=since, wait=wait, **filters, **options)

    async def _events(
        self, run_or_trace: str, scope: Scope, receive: Receive, send: Send, head: bool
    ) -> None:
        query = _query(scope)
        followed = await asyncio.to_thread(self._follow, run_or_trace, query)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),  # proxies must not hold the stream back
                    ],
                }
            )
            if head:
                await send({"type": "http.response.body", "body": b""})
                return
            stream = asyncio.ensure_future(self._stream(followed, run_or_trace, scope, send))
            gone = asyncio.ensure_future(_disconnected(receive))
            try:
                await asyncio.wait({stream, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (stream, gone):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        finally:
            followed.close()  # the client left or the run ended: its poller or thread goes

    async def _stream(self, followed: Follow, run_or_trace: str, scope: Scope, send: Send) -> None:
        async def write(text: str) -> None:
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})

        await write(f"retry: 2000\n: following {run_or_trace.strip()}\n\n")
        resume = _header(scope, b"last-event-id")
        if resume:
            followed.resume_after(resume.strip())
        ending: dict[str, Any]
        try:
            while True:
                event = await followed.next_event(self.keepalive)
                if event is None:
                    await write(": keep-alive\n\n")
                    continue
                await write(_sse(event["event"], _json_body(event).decode(), followed.last_event_id))
        except StopAsyncIteration:
            ending = {"status": "ok"}
        except RunFailedError as exc:
            ending = {"status": "error", "error_type": exc.error_type, "message": exc.error_message}
        except RunLostError as exc:
            ending = {"status": "lost", "message": str(exc)}
        except (RunNotFoundError, progress.TraceNotFoundError) as exc:
            ending = {"status": "not_found", "message": str(exc)}
        except Exception as exc:  # the backend failed, or the store went away
            ending = {"status": "unavailable", "message": f"{type(exc).__name__}: {exc}"}
        await write(_sse("end", _json_body(ending).decode(), None))
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _sse(event: str, data: str, event_id: str | None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in data.split("\n")]  # JSON has no raw newlines; kept safe anyway
    return "\n".join(lines) + "\n\n"


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(
    backend: str | Backend = "local", *, keepalive: float = DEFAULT_KEEPALIVE, **options: Any
) -> RunsApp:
    """The application over ``backend``: ``"local"`` (``path=`` a store file),
    ``"jaeger"`` or ``"tempo"`` (``url=``, ``headers=``, TLS options, as ``progress.get``)."""
    return RunsApp(backend, keepalive=keepalive, **options)


app = create_app()
"""The application over this machine's embedded store (``OTEL_RUNNABLES_STORE``)."""
