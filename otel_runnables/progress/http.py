"""GET-JSON for the HTTP query backends: auth headers, TLS, typed errors, and three
guarantees a slow or hostile server cannot break:

- ``timeout`` is a total deadline for a request, redirects included: a server that
  answers one byte a second is cut off when it runs out, not kept alive by each byte;
- a response larger than ``max_response_bytes`` is refused as soon as it gets there;
- credentials (every header the caller gave, and the client certificate) are sent only
  to the configured URL's scheme, host and port: a redirect elsewhere, or from https to
  http, goes without them, as browsers and ``requests`` do.

Proxies come from the usual environment variables, as everywhere in ``urllib``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any

from otel_runnables.progress.backend import (
    BackendUnavailableError,
    InvalidOptionError,
    MalformedResponseError,
    ResponseTooLargeError,
)

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "HttpOptions", "NotFound", "decode_json", "get_json", "check_url"]

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_EXCERPT = 200
_ERROR_BODY_BYTES = 64 * 1024  # read of an error answer: enough for its message
_CHUNK = 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


def check_url(url: object, what: str = "url") -> str:
    """``url`` if it is an absolute http(s) URL with a host, else ``InvalidOptionError``."""
    if not isinstance(url, str):
        raise InvalidOptionError(f"{what} must be a str like http://localhost:16686, got {url!r}")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        hint = f"; did you mean http://{url.strip()}?" if "://" not in url and url.strip() else ""
        raise InvalidOptionError(
            f"{what} {url!r} is not an http:// or https:// URL with a host "
            f"(e.g. http://localhost:16686){hint}"
        )
    try:
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError as exc:
        raise InvalidOptionError(f"{what} {url!r} has an invalid port: {exc}") from None
    return url.strip()


def _origin(url: str) -> tuple[str, str, int]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


def _may_carry_credentials(origin: tuple[str, str, int], url: str) -> bool:
    """Same host and port, and never from https down to http; http -> https on the
    default ports is an upgrade, as ``requests`` treats it."""
    scheme, host, port = _origin(url)
    if host != origin[1]:
        return False
    if (scheme, port) == (origin[0], origin[2]):
        return True
    return origin[0] == "http" and scheme == "https" and (origin[2], port) == (80, 443)


@dataclass(frozen=True)
class HttpOptions:
    """Where and how to reach a backend; checked when made (``InvalidOptionError``)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0  # seconds for a whole request, redirects and body included
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    insecure_skip_verify: bool = False
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        check_url(self.url)
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
            raise InvalidOptionError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if timeout <= 0:
            raise InvalidOptionError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        cap = self.max_response_bytes
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise InvalidOptionError(f"max_response_bytes must be a positive int, got {cap!r}")
        for name, value in self.headers.items():
            if not isinstance(name, str) or not isinstance(value, str) or not name.strip():
                raise InvalidOptionError(f"headers must map names to str values, got {name!r}: {value!r}")
            if any(char in name + value for char in "\r\n"):
                raise InvalidOptionError(f"header {name!r} contains a line break")

    def ssl_context(self, *, with_client_cert: bool = True) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.insecure_skip_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if with_client_cert and self.client_cert is not None:
                context.load_cert_chain(self.client_cert, self.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidOptionError(
                f"the TLS files (ca_file, client_cert, client_key) could not be loaded: {exc}"
            ) from None
        return context


class NotFound(Exception):
    """The backend answered 404 (the caller decides what that means)."""

    def __init__(self, url: str, body: str) -> None:
        super().__init__(url)
        self.url, self.body = url, body


class _Deadline:
    """One request's end: at ``seconds`` from now every socket it opened is shut
    down, which wakes a read that a dripping server would keep going."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        left = self._at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's deadline has passed")
        return left

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if not self.expired:
                return
        self._cut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._cut(sock)

    @staticmethod
    def _cut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self._at

    def cancel(self) -> None:
        self._timer.cancel()


class _WatchedHTTPConnection(http.client.HTTPConnection):
    """Connects within the deadline's time left, then hands it the socket to cut."""

    def __init__(self, host: str, *, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        self.timeout = self.deadline.remaining()
        super().connect()
        self.deadline.watch(self.sock)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(partial(_WatchedHTTPConnection, deadline=self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    """Presents the client certificate only to the configured origin."""

    def __init__(self, deadline: _Deadline, options: HttpOptions, origin: tuple[str, str, int]) -> None:
        super().__init__()
        self.deadline, self.options, self.origin = deadline, options, origin

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        same = _may_carry_credentials(self.origin, req.full_url)
        context = self.options.ssl_context(with_client_cert=same)
        connection = partial(_WatchedHTTPSConnection, deadline=self.deadline)
        return self.do_open(connection, req, context=context)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects, dropping the caller's headers where they must not go."""

    def __init__(self, origin: tuple[str, str, int], credentials: frozenset[str]) -> None:
        super().__init__()
        self.origin, self.credentials = origin, credentials
        self.dropped = False

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and not _may_carry_credentials(self.origin, new.full_url):
            for name in list(new.headers):
                if name.lower() in self.credentials:
                    del new.headers[name]
                    self.dropped = True
        return new


# what the request's own deadline may overrun by before the caller stops waiting for it
_DEADLINE_GRACE = 0.5


def get_json(options: HttpOptions, path: str, params: Mapping[str, str] | None = None) -> Any:
    """GET ``options.url + path`` and decode the JSON body.

    404 raises ``NotFound``; unreachable, out of time and other 4xx/5xx raise
    ``BackendUnavailableError``; a body that is not JSON (or not HTTP)
    ``MalformedResponseError``; one past the size cap ``ResponseTooLargeError``.

    The request runs on a daemon thread of its own: its deadline cuts its sockets,
    but nothing can interrupt a host name lookup (``getaddrinfo``), which a slow
    DNS server can keep going for tens of seconds. The caller waits no longer than
    the deadline; a lookup still going then finishes on its own."""
    url = options.url.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    answer: Future[Any] = Future()

    def request() -> None:
        try:
            answer.set_result(_get_json(options, url))
        except BaseException as exc:  # handed to the caller as it is
            answer.set_exception(exc)

    threading.Thread(target=request, name="otel_runnables-http", daemon=True).start()
    if not wait([answer], options.timeout + _DEADLINE_GRACE).done:
        host = urllib.parse.urlsplit(url).hostname
        raise BackendUnavailableError(
            f"{url} is unreachable: no complete answer within {options.timeout:g} s "
            f"(the name {host!r} was still being looked up)"
        )
    return answer.result()


def _get_json(options: HttpOptions, url: str) -> Any:
    origin = _origin(options.url)
    redirects = _RedirectHandler(origin, frozenset(name.lower() for name in options.headers))
    deadline = _Deadline(options.timeout)
    try:
        opener = urllib.request.build_opener(
            _HTTPHandler(deadline), _HTTPSHandler(deadline, options, origin), redirects
        )
        request = urllib.request.Request(url, headers={**options.headers, "Accept": "application/json"})
        try:
            with opener.open(request, timeout=options.timeout) as response:
                body = _read_capped(response, url, options.max_response_bytes)
        except urllib.error.HTTPError as exc:
            text = _error_text(exc)
            if exc.code == 404:
                raise NotFound(url, text) from None
            note = ""
            if redirects.dropped and exc.code in (401, 403):
                note = " (after a redirect to another host or to http, credentials were not sent)"
            raise BackendUnavailableError(
                f"{url} answered {exc.code} {exc.reason}{note}: {text[:_EXCERPT]}"
            ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        if isinstance(exc, InvalidOptionError):
            raise
        if deadline.passed():
            raise BackendUnavailableError(
                f"{url} is unreachable: no complete answer within {options.timeout:g} s"
            ) from None
        if isinstance(exc, http.client.HTTPException) and not isinstance(exc, ConnectionError):
            raise MalformedResponseError(f"{url} did not give a complete HTTP answer: {exc!r}") from None
        reason = getattr(exc, "reason", exc)
        raise BackendUnavailableError(f"{url} is unreachable: {reason}") from None
    finally:
        deadline.cancel()
    if deadline.expired:  # the cut socket ended the body early: it is not the answer
        raise BackendUnavailableError(
            f"{url} is unreachable: no complete answer within {options.timeout:g} s"
        )
    return decode_json(url, body.decode("utf-8", "replace"))


def _read_capped(response: http.client.HTTPResponse, url: str, cap: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise ResponseTooLargeError(_too_large(url, cap, f"it announced {int(declared):,} bytes"))
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = response.read(min(_CHUNK, cap + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            raise ResponseTooLargeError(_too_large(url, cap, "it sent more"))
        chunks.append(chunk)


def _too_large(url: str, cap: int, what: str) -> str:
    return (
        f"{url} answered more than the {cap:,} bytes allowed ({what}); raise the cap with "
        "--max-response-mb (max_response_bytes=) if the trace really is that large"
    )


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read(_ERROR_BODY_BYTES).decode("utf-8", "replace") if exc.fp is not None else ""
    except (OSError, http.client.HTTPException):
        return ""


def decode_json(url: str, body: str) -> Any:
    """One JSON document, or several in a row (a streamed answer) as a list."""
    decoder = json.JSONDecoder()
    documents: list[Any] = []
    index, text = 0, body.strip()
    try:
        while index < len(text):
            value, index = decoder.raw_decode(text, index)
            documents.append(value)
            while index < len(text) and text[index].isspace():
                index += 1
    except RecursionError:
        raise MalformedResponseError(f"{url} answered with JSON nested too deeply to read") from None
    except ValueError:
        raise MalformedResponseError(
            f"{url} answered with a body that is not JSON: {body[:_EXCERPT]!r}"
        ) from None
    if not documents:
        raise MalformedResponseError(f"{url} answered with an empty body")
    return documents[0] if len(documents) == 1 else documents
