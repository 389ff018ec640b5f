"""GET-JSON for the HTTP query backends: auth headers, timeouts, TLS, typed errors."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_runnables.progress.backend import BackendUnavailableError, MalformedResponseError

__all__ = ["HttpOptions", "NotFound", "get_json"]

_EXCERPT = 200


@dataclass(frozen=True)
class HttpOptions:
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    insecure_skip_verify: bool = False

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert is not None:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


class NotFound(Exception):
    """The backend answered 404 (the caller decides what that means)."""

    def __init__(self, url: str, body: str) -> None:
        super().__init__(url)
        self.url, self.body = url, body


def get_json(options: HttpOptions, path: str, params: Mapping[str, str] | None = None) -> Any:
    """GET ``options.url + path`` and decode the JSON body.

    404 raises ``NotFound``; unreachable, timeouts and other 4xx/5xx raise
    ``BackendUnavailableError``; a body that is not JSON ``MalformedResponseError``."""
    url = options.url.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, headers={"Accept": "application/json", **options.headers})
    try:
        with urllib.request.urlopen(
            request, timeout=options.timeout, context=options.ssl_context()
        ) as response:
            body = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace") if exc.fp is not None else ""
        if exc.code == 404:
            raise NotFound(url, text) from None
        raise BackendUnavailableError(f"{url} answered {exc.code} {exc.reason}: {text[:_EXCERPT]}") from None
    except (urllib.error.URLError, TimeoutError, OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BackendUnavailableError(f"{url} is unreachable: {reason}") from None
    return decode_json(url, body)


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
    except ValueError:
        raise MalformedResponseError(
            f"{url} answered with a body that is not JSON: {body[:_EXCERPT]!r}"
        ) from None
    if not documents:
        raise MalformedResponseError(f"{url} answered with an empty body")
    return documents[0] if len(documents) == 1 else documents
