"""Querying Jaeger and Tempo never hangs, never balloons, never leaks credentials, and
turns any answer it cannot read into one typed error: against real servers on
127.0.0.1 that drip, redirect, send too much or send garbage.

The elapsed-time bounds are behavioural (a request ends near its deadline instead of
running for the drip's 30 s), generous against a slow machine."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_runnables import progress
from otel_runnables.progress import (
    BackendUnavailableError,
    InvalidOptionError,
    MalformedResponseError,
    ResponseTooLargeError,
    TraceNotFoundError,
)
from tests.bad_servers import Certificates, Drip, Handler, Scripted, make_certificates

ROOT = Path(__file__).resolve().parent.parent
TRACE_ID = "1" * 32
SPAN = {"traceId": TRACE_ID, "spanId": "2" * 16, "name": "x", "startTimeUnixNano": "1"}


@pytest.fixture
def server() -> Iterator[Scripted]:
    made = Scripted()
    yield made
    made.close()


def answer_empty(handler: Handler) -> None:
    handler.answer(200, {"result": {"resourceSpans": []}})


def jaeger_trace(server: Scripted, body: Any) -> None:
    def route(handler: Handler) -> None:
        handler.answer(200, body if isinstance(body, bytes) else json.dumps(body).encode())

    server.routes[f"/api/v3/traces/{TRACE_ID}"] = route


# -- a total deadline per request -----------------------------------------------------


@pytest.mark.parametrize("in_headers", [False, True], ids=["dripping body", "dripping headers"])
@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_a_dripping_server_is_cut_off_at_the_deadline(backend: str, in_headers: bool) -> None:
    drip = Drip(every=0.2, lasting=30, in_headers=in_headers)  # each byte well within the timeout
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=r"no complete answer within 1 s"):
            progress.get(TRACE_ID, backend=backend, url=f"http://127.0.0.1:{drip.port}", timeout=1)
        assert time.monotonic() - started < 6  # the drip would go on for 30 s
    finally:
        drip.close()


def test_the_deadline_covers_redirects_too(server: Scripted) -> None:
    drip = Drip(every=0.2, lasting=30)
    try:
        server.routes[f"/api/v3/traces/{TRACE_ID}"] = lambda h: h.redirect(
            f"http://127.0.0.1:{drip.port}/api/v3/traces/{TRACE_ID}"
        )
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="within 1 s"):
            progress.get(TRACE_ID, backend="jaeger", url=server.url(), timeout=1)
        assert time.monotonic() - started < 6
    finally:
        drip.close()


# -- a cap on the size of an answer ---------------------------------------------------


def test_the_deadline_covers_a_host_name_lookup_that_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing can interrupt getaddrinfo (a DNS server that does not answer keeps it
    going for tens of seconds): the caller stops waiting at the deadline all the same.
    The lookup is the one thing stood in for here, as a resolver that never answers."""
    resolve = socket.getaddrinfo
    released = threading.Event()

    def unanswered(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow-dns.example":
            released.wait(30)
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", unanswered)
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=r"within 1 s \(the name 'slow-dns.example'"):
            progress.get(TRACE_ID, backend="jaeger", url="http://slow-dns.example:16686", timeout=1)
        assert time.monotonic() - started < 6  # the lookup would go on for 30 s
    finally:
        released.set()


@pytest.mark.parametrize("announced", [True, False], ids=["Content-Length", "until closed"])
def test_an_answer_past_the_cap_is_refused(server: Scripted, announced: bool) -> None:
    huge = b'{"result": {"resourceSpans": [], "pad": "' + b"x" * (3 << 20) + b'"}}'
    server.routes[f"/api/v3/traces/{TRACE_ID}"] = lambda h: h.answer(200, huge, length=announced)
    with pytest.raises(ResponseTooLargeError, match=r"more than the 1,048,576 bytes allowed") as refused:
        progress.get(TRACE_ID, backend="jaeger", url=server.url(), max_response_bytes=1 << 20)
    assert server.url() in str(refused.value) and "--max-response-mb" in str(refused.value)
    # under the cap the same answer is read (and holds no trace)
    with pytest.raises(TraceNotFoundError):
        progress.get(TRACE_ID, backend="jaeger", url=server.url(), max_response_bytes=4 << 20)


# -- malformed answers: one typed error each -------------------------------------------

MALFORMED_JAEGER = {
    "a list for result": {"result": []},
    "no result (Jaeger v1's data)": {"data": [{"traceID": TRACE_ID, "spans": []}]},
    "resourceSpans an object": {"result": {"resourceSpans": {"scopeSpans": []}}},
    "a resourceSpans entry a number": {"result": {"resourceSpans": [1]}},
    "scopeSpans a string": {"result": {"resourceSpans": [{"scopeSpans": "spans"}]}},
    "spans a number": {"result": {"resourceSpans": [{"scopeSpans": [{"spans": 5}]}]}},
    "a span a string": {"result": {"resourceSpans": [{"scopeSpans": [{"spans": ["span"]}]}]}},
    "events a number": {"result": {"resourceSpans": [{"scopeSpans": [{"spans": [{**SPAN, "events": 3}]}]}]}},
    "an event a number": {
        "result": {"resourceSpans": [{"scopeSpans": [{"spans": [{**SPAN, "events": [1]}]}]}]}
    },
    "several documents, one bad": [{"result": {"resourceSpans": []}}, 7],
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "a string": "resourceSpans",
}


@pytest.mark.parametrize("body", MALFORMED_JAEGER.values(), ids=MALFORMED_JAEGER.keys())
def test_malformed_jaeger_answers(server: Scripted, body: Any) -> None:
    jaeger_trace(server, body)
    with pytest.raises(MalformedResponseError) as malformed:
        progress.get(TRACE_ID, backend="jaeger", url=server.url())
    assert server.url() in str(malformed.value)


def test_odd_values_inside_a_span_are_read_around() -> None:
    """Values of the wrong type inside a span are not worth refusing the trace for."""
    from otel_runnables.progress.otlp_json import parse_resource_spans

    odd = {
        **SPAN,
        "status": {"code": [2], "message": 5},
        "endTimeUnixNano": float("inf"),
        "attributes": [
            {"key": "a", "value": {"arrayValue": [1]}},
            {"key": "b", "value": {"kvlistValue": "x"}},
            {"key": "c", "value": {"intValue": "1e999"}},
            7,
        ],
    }
    skipped = {**SPAN, "spanId": "3" * 16, "startTimeUnixNano": float("inf")}
    document = {"resourceSpans": [{"resource": [1], "scopeSpans": [{"spans": [odd, skipped]}]}]}
    (record,) = parse_resource_spans(document, "t")
    assert record.status == "unset" and record.status_message == "5" and record.end_ns == 1
    assert record.attributes == {"a": [], "b": {}, "c": None}


MALFORMED_TEMPO = {
    "trace a number": {"trace": 5},
    "resourceSpans a string": {"trace": {"resourceSpans": "x"}},
    "nested 100,000 deep": b'{"trace": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("body", MALFORMED_TEMPO.values(), ids=MALFORMED_TEMPO.keys())
def test_malformed_tempo_answers(server: Scripted, body: Any) -> None:
    server.routes[f"/api/v2/traces/{TRACE_ID}"] = lambda h: h.answer(
        200, body if isinstance(body, bytes) else json.dumps(body).encode()
    )
    with pytest.raises(MalformedResponseError):
        progress.get(TRACE_ID, backend="tempo", url=server.url())


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_runnables._cli", *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("shape", ["nested 100,000 deep", "events a number"])
def test_the_cli_gives_one_line_and_exit_3_for_a_malformed_answer(server: Scripted, shape: str) -> None:
    jaeger_trace(server, MALFORMED_JAEGER[shape])
    done = cli("progress", TRACE_ID, "--backend", "jaeger", "--url", server.url())
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert server.url() in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "-1"], "expected a number of seconds > 0, got '-1'"),
        (["--timeout", "nan"], "expected a number of seconds > 0"),
        (["--follow", "--interval", "-1"], "expected a number of seconds > 0, got '-1'"),
        (["--wait", "-5"], "expected a number of seconds >= 0"),
        (["--max-response-mb", "0"], "positive number of MiB"),
        (["--url", "not-a-url"], "'not-a-url' is not an http:// or https:// URL"),
        (["--url", "localhost:16686"], "did you mean http://localhost:16686?"),
        (["--url", "http://localhost:99999"], "invalid port"),
    ],
)
def test_bad_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    done = cli("progress", TRACE_ID, "--backend", "jaeger", *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_bad_options_from_python_name_the_option() -> None:
    for options, message in [
        ({"url": "localhost:16686"}, "url 'localhost:16686'"),
        ({"timeout": 0}, "timeout must be"),
        ({"timeout": float("inf")}, "timeout must be"),
        ({"max_response_bytes": 0}, "max_response_bytes"),
        ({"headers": {"Authorization": "a\r\nX: b"}}, "line break"),
    ]:
        with pytest.raises(InvalidOptionError, match=message):
            progress.make_backend("jaeger", **options)


# -- credentials stay with the host they were given for ---------------------------------

AUTH = {"Authorization": "Bearer s3cret", "X-Api-Key": "k3y"}


def test_credentials_follow_a_redirect_on_the_same_host(server: Scripted) -> None:
    server.routes[f"/api/v3/traces/{TRACE_ID}"] = lambda h: h.redirect(f"/moved/{TRACE_ID}")
    server.routes[f"/moved/{TRACE_ID}"] = answer_empty
    with pytest.raises(TraceNotFoundError):
        progress.get(TRACE_ID, backend="jaeger", url=server.url(), headers=AUTH)
    assert [seen.headers.get("Authorization") for seen in server.seen] == ["Bearer s3cret"] * 2


@pytest.mark.parametrize("target_host", ["localhost", "127.0.0.1"], ids=["another host", "another port"])
def test_credentials_are_dropped_on_a_redirect_elsewhere(server: Scripted, target_host: str) -> None:
    other = Scripted()
    try:
        other.routes[f"/api/v3/traces/{TRACE_ID}"] = lambda h: h.answer(401, {"error": "who are you"})
        server.routes[f"/api/v3/traces/{TRACE_ID}"] = lambda h: h.redirect(
            f"{other.url(target_host)}/api/v3/traces/{TRACE_ID}", 307
        )
        with pytest.raises(BackendUnavailableError, match="credentials were not sent"):
            progress.get(TRACE_ID, backend="jaeger", url=server.url(), headers=AUTH)
        assert server.seen[0].headers["Authorization"] == "Bearer s3cret"
        (seen,) = other.seen
        assert "Authorization" not in seen.headers and "X-Api-Key" not in seen.headers
        assert "s3cret" not in json.dumps(seen.headers) and "k3y" not in json.dumps(seen.headers)
    finally:
        other.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_credentials_are_dropped_from_https_down_to_http(certificates: Certificates) -> None:
    secure = Scripted(tls=certificates.server_context())
    plain = Scripted()
    try:
        plain.routes[f"/api/v3/traces/{TRACE_ID}"] = answer_empty
        secure.routes[f"/api/v3/traces/{TRACE_ID}"] = lambda h: h.redirect(
            f"http://127.0.0.1:{plain.port}/api/v3/traces/{TRACE_ID}"
        )
        options = {
            "url": secure.url(),
            "headers": AUTH,
            "ca_file": str(certificates.server_cert),
            "client_cert": str(certificates.client_cert),
            "client_key": str(certificates.client_key),
        }
        with pytest.raises(TraceNotFoundError):
            progress.get(TRACE_ID, backend="jaeger", **options)
        assert secure.seen[0].headers["Authorization"] == "Bearer s3cret" and secure.seen[0].client_cert
        (seen,) = plain.seen
        assert "Authorization" not in seen.headers and "X-Api-Key" not in seen.headers
    finally:
        secure.close()
        plain.close()


def test_the_client_certificate_stays_with_its_host(certificates: Certificates) -> None:
    first = Scripted(tls=certificates.server_context())
    second = Scripted(tls=certificates.server_context())
    try:
        second.routes[f"/api/v3/traces/{TRACE_ID}"] = answer_empty
        first.routes[f"/api/v3/traces/{TRACE_ID}"] = lambda h: h.redirect(
            f"{second.url('localhost')}/api/v3/traces/{TRACE_ID}"
        )
        with pytest.raises(TraceNotFoundError):
            progress.get(
                TRACE_ID,
                backend="jaeger",
                url=first.url(),
                ca_file=str(certificates.server_cert),
                client_cert=str(certificates.client_cert),
                client_key=str(certificates.client_key),
            )
        assert first.seen[0].client_cert and not second.seen[0].client_cert
    finally:
        first.close()
        second.close()
