"""Where the library's spans go, with no settings or with ``configure()``.

Rules, in order:

1. ``set_tracer_provider(p)`` (tests, embedding) or ``configure(tracer_provider=p)``: spans go to ``p``.
2. An application that set its own global TracerProvider keeps it: the library
   takes its tracer from it and only *adds* its processors (the embedded store,
   and exporters ``configure()`` was explicitly asked for). It is never replaced.
3. Otherwise, ``configure()`` builds a provider from its arguments and the
   standard ``OTEL_*`` variables (service name and resource, sampler, span
   limits, ``OTEL_TRACES_EXPORTER``, OTLP endpoint/protocol/headers/timeout/
   compression/certificate, batch settings) and makes it the global one.
4. With no call at all, the first run sets up the same provider privately
   (not as the global one, so an application may still set its own later;
   the library then moves to it): the embedded store, plus OTLP when an
   endpoint is set.

``OTEL_SDK_DISABLED=true`` turns all of it off: runs still call their handlers.
Tracers are named ``otel_runnables`` with the package version. ``atexit``
flushes what we set up, so short scripts lose nothing.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry import trace
from opentelemetry._logs import LoggerProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from otel_runnables import _event_logs as event_logs
from otel_runnables import _settings
from otel_runnables._arguments import check_arguments
from otel_runnables._event_logs import LogSetup
from otel_runnables._export_health import BoundedBatchSpanProcessor
from otel_runnables._exporting import (
    ConfigurationError,
    ExportSettings,
    build_processors,
    exporter_names,
    store_path_setting,
)
from otel_runnables._fork_safe import renew_in_child
from otel_runnables._log_exporting import log_exporter_names
from otel_runnables._version import __version__

__all__ = [
    "INSTRUMENTATION_NAME",
    "ConfigurationError",
    "TelemetrySetup",
    "configure",
    "current_setup",
    "force_flush",
    "get_tracer",
    "set_tracer_provider",
    "shutdown",
    "swap_tracer",
]

logger = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "otel_runnables"


@dataclass
class TelemetrySetup:
    """What the library set up: the provider its spans go to, the processors it
    added, and where the embedded store writes (None: no store)."""

    provider: trace.TracerProvider
    processors: list[SpanProcessor] = field(default_factory=list)
    store_path: Path | None = None
    exporters: list[str] = field(default_factory=list)
    owns_provider: bool = False  # we built it, so we shut it down
    is_global: bool = False
    log_setup: LogSetup | None = None
    """Where log-based events go, when custom events go to logs (see `otel_runnables._event_logs`)."""

    def _batches(self) -> list[BoundedBatchSpanProcessor]:
        return [p for p in self.processors if isinstance(p, BoundedBatchSpanProcessor)]

    def export_timeout(self) -> float:
        """The longest export timeout of our exporters (seconds): what shutdown waits at most."""
        return max((batch.export_timeout for batch in self._batches()), default=0.0)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export what every processor holds; False if some of it was not delivered
        within ``timeout_millis`` in all (the exporters flush at the same time)."""
        deadline = time.monotonic() + timeout_millis / 1000
        for batch in self._batches():
            batch.request_flush()
        flushed = True
        for processor in self.processors:
            try:
                flushed = processor.force_flush(_millis_left(deadline)) and flushed
            except Exception:
                logger.exception("flushing %r failed", processor)
                flushed = False
        return flushed

    def shutdown(self, timeout_millis: int | None = None) -> bool:
        """Export what is queued and stop, within ``timeout_millis`` in all (default: the
        longest export timeout, e.g. ``OTEL_EXPORTER_OTLP_TIMEOUT``); False if some spans
        were not delivered (they are counted and logged)."""
        batches = self._batches()
        seconds = self.export_timeout() if timeout_millis is None else timeout_millis / 1000
        deadline = time.monotonic() + seconds
        for batch in batches:
            batch.stop_accepting()  # every exporter drains at the same time
        done = True
        for processor in self.processors:
            try:
                if isinstance(processor, BoundedBatchSpanProcessor):
                    done = processor.shutdown_within(_millis_left(deadline)) and done
                else:
                    processor.shutdown()
            except Exception:
                logger.exception("shutting down %r failed", processor)
                done = False
        if self.owns_provider and isinstance(self.provider, SdkTracerProvider):
            self.provider.shutdown()  # our processors are stopped: this returns at once
        return done


def _millis_left(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


_lock = threading.RLock()
renew_in_child(globals(), "_lock", threading.RLock)

_pinned: trace.Tracer | None = None  # the tracer every run uses, once decided
_private: trace.Tracer | None = None  # the zero-config default's, while no application provider exists
_setup: TelemetrySetup | None = None
_retiring: list[TelemetrySetup] = []  # given way to an application's provider, shutting down
_adopted: set[int] = set()  # ids of application providers we already added the store to


def _tracer_of(provider: trace.TracerProvider) -> trace.Tracer:
    return provider.get_tracer(INSTRUMENTATION_NAME, __version__)


def get_tracer() -> trace.Tracer:
    """The tracer every run span is started with."""
    tracer = _pinned
    if tracer is not None:
        return tracer
    private = _private
    if private is not None and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return private
    return _resolve()


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _resolve() -> trace.Tracer:
    """No tracer pinned yet, or only our private default: follow the rules above."""
    global _pinned, _setup, _private
    with _lock:
        if _pinned is not None:
            return _pinned
        application = trace.get_tracer_provider()
        if not isinstance(application, trace.ProxyTracerProvider) or _sdk_disabled():
            # the application's provider (or, disabled, the API's no-op one): never replaced
            if _setup is not None and _setup.owns_provider and not _setup.is_global:
                # our private default gives way, in the background: the user's call never
                # waits on export (shutdown() and the exit wait for it)
                _retiring.append(_setup)
                threading.Thread(target=_setup.shutdown, name="otel_runnables-shutdown", daemon=True).start()
                _setup, _private = None, None
            if not _sdk_disabled():
                try:
                    _setup = _adopt(application, ExportSettings(exporters=()), None)
                except Exception:  # the store must never break the user's run
                    logger.exception("otel_runnables could not add the embedded store to the provider")
                    _setup = TelemetrySetup(provider=application)
            _pinned = _tracer_of(application)
            return _pinned
        if _setup is None:
            try:
                _setup = _build(ExportSettings(), None, service_name=None, make_global=False)
            except Exception as exc:
                # a bad OTEL_* value must not break the user's run: say it once, trace nowhere
                logger.error(
                    "otel_runnables could not set up export from the environment, so spans go nowhere: %s",
                    exc,
                    exc_info=not isinstance(exc, ConfigurationError),
                )
                _setup = TelemetrySetup(provider=trace.NoOpTracerProvider())
                _pinned = _tracer_of(_setup.provider)
                return _pinned
        # private default: get_tracer keeps checking whether the application set its own provider
        _private = _tracer_of(_setup.provider)
        return _private


def _adopt(provider: trace.TracerProvider, settings: ExportSettings, store: object) -> TelemetrySetup:
    """Add our processors to an application's provider (once per provider)."""
    setup = TelemetrySetup(provider=provider)
    add = getattr(provider, "add_span_processor", None)
    if not callable(add) or id(provider) in _adopted:
        return setup
    store_path = store_path_setting(store)  # type: ignore[arg-type]
    processors = build_processors(settings, store_path)
    for processor in processors:
        add(processor)
    _adopted.add(id(provider))
    setup.processors, setup.store_path, setup.exporters = processors, store_path, exporter_names(settings)
    return setup


def _build(
    settings: ExportSettings, store: object, *, service_name: str | None, make_global: bool
) -> TelemetrySetup:
    attributes = {SERVICE_NAME: service_name} if service_name else {}
    # shut down by our atexit hook, after the store marked what never ended
    provider = SdkTracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    store_path = store_path_setting(store)  # type: ignore[arg-type]
    processors = build_processors(settings, store_path)
    for processor in processors:
        provider.add_span_processor(processor)
    if make_global:
        trace.set_tracer_provider(provider)
    return TelemetrySetup(
        provider=provider,
        processors=processors,
        store_path=store_path,
        exporters=exporter_names(settings),
        owns_provider=True,
        is_global=make_global,
    )


def configure(
    *,
    service_name: str | None = None,
    exporters: Sequence[str] | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
    compression: str | None = None,
    certificate_file: str | None = None,
    store: bool | str | os.PathLike[str] | None = None,
    liveness_spans: bool | None = None,
    liveness_after: float | None = None,
    liveness_interval: float | None = None,
    span_exporters: Sequence[SpanExporter] = (),
    tracer_provider: trace.TracerProvider | None = None,
    events: str | None = None,
    logger_provider: LoggerProvider | None = None,
    set_global: bool = True,
) -> TelemetrySetup:
    """Set up where spans go; arguments win over ``OTEL_*`` variables.

    - ``exporters``: any of ``"otlp"``, ``"console"``, ``"none"`` (default: ``OTEL_TRACES_EXPORTER``,
      else OTLP if an endpoint is set). ``endpoint`` is the base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT``
      (``/v1/traces`` is added for http/protobuf); giving one implies ``"otlp"``.
    - ``protocol``: ``"http/protobuf"`` (default) or ``"grpc"``; ``headers``, ``timeout`` (seconds
      for one export, and the most ``shutdown()`` and the exit wait for the exporter),
      ``compression`` (``"gzip"``/``"deflate"``/``"none"``), ``certificate_file`` as their
      ``OTEL_EXPORTER_OTLP_*`` twins.
    - ``store``: False for no embedded store, a path for another file (default:
      ``OTEL_RUNNABLES_STORE``, else the per-user data directory).
    - ``liveness_spans`` / ``liveness_after`` / ``liveness_interval``: pending and event-mirror
      spans, after how many seconds a live run is announced, and at most one mirror per run how
      often (see ``otel_runnables._liveness``).
    - ``span_exporters``: more exporters of your own, each behind a batch processor.
    - ``tracer_provider``: add our processors to this provider instead (it is not made global).
    - ``events``: where custom events go, ``"span"``, ``"log"`` or ``"both"`` (default:
      ``OTEL_RUNNABLES_EVENTS``, else ``"span"``); with ``"log"``/``"both"`` log records are exported
      like spans, by ``exporters`` or ``OTEL_LOGS_EXPORTER`` and ``OTEL_EXPORTER_OTLP_LOGS_*``
      (see ``otel_runnables._event_logs``). ``logger_provider``: emit them through this provider.
    - ``set_global``: make the provider we build the global one (for other instrumentations too).

    An argument of the wrong form raises ``ConfigurationError`` naming it and the form expected
    (``endpoint="http://localhost:4318"``, not ``4318`` or ``"localhost:4318"``), before anything
    changes. The ``OTEL_RUNNABLES_*`` variables are read again (a bad one raises ``ConfigurationError``).
    An application's own global provider is kept: our processors are added to it.
    Call ``shutdown()`` before configuring again.
    """
    global _pinned, _setup, _private
    from otel_runnables import _liveness as liveness

    check_arguments(  # every one, before anything changes
        service_name=service_name,
        exporters=exporters,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        timeout=timeout,
        compression=compression,
        certificate_file=certificate_file,
        store=store,
        liveness_spans=liveness_spans,
        liveness_after=liveness_after,
        liveness_interval=liveness_interval,
        span_exporters=span_exporters,
        tracer_provider=tracer_provider,
        events=events,
        logger_provider=logger_provider,
        set_global=set_global,
    )
    settings = ExportSettings(
        exporters=["otlp"] if exporters is None and endpoint is not None else exporters,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        timeout=timeout,
        compression=compression,
        certificate_file=None if certificate_file is None else str(certificate_file),
        extra_exporters=tuple(span_exporters),
    )
    exporter_names(settings)
    _settings.refresh(strict=True)  # the OTEL_RUNNABLES_* variables, read again
    events = _settings.EVENTS.value if events is None else events.strip().lower()
    if events != "span":
        log_exporter_names(settings)  # validate before touching anything
    if liveness_spans is None and liveness_after is not None:
        liveness_spans = True  # a delay asks for liveness spans
    liveness.configure_liveness(liveness_spans, liveness_after, liveness_interval)
    with _lock:
        if _setup is not None and (_setup.is_global or not _setup.owns_provider) and _setup.processors:
            raise ConfigurationError("configure() was already called; call otel_runnables.shutdown() first")
        if _setup is not None:
            _setup.shutdown()
            _setup, _private = None, None
        if _sdk_disabled():
            _setup = TelemetrySetup(provider=trace.get_tracer_provider())
        elif tracer_provider is not None:
            _adopted.discard(id(tracer_provider))
            _setup = _adopt(tracer_provider, settings, store)
        else:
            application = trace.get_tracer_provider()
            if isinstance(application, trace.ProxyTracerProvider):
                _setup = _build(settings, store, service_name=service_name, make_global=set_global)
            else:
                _adopted.discard(id(application))
                _setup = _adopt(application, settings, store)
        _pinned = _tracer_of(_setup.provider)
        _setup.log_setup = event_logs.configure_event_logs(
            events,
            settings,
            resource=_resource_of(_setup, service_name),
            logger_provider=logger_provider,
            set_global=set_global,
        )
        return _setup


def _resource_of(setup: TelemetrySetup, service_name: str | None) -> Resource:
    """The resource of the provider we built, so log records name the same service."""
    resource = getattr(setup.provider, "resource", None) if setup.owns_provider else None
    if isinstance(resource, Resource):
        return resource
    return Resource.create({SERVICE_NAME: service_name} if service_name else {})


def current_setup() -> TelemetrySetup | None:
    """What the library set up so far (None before the first run or configure())."""
    return _setup


def force_flush(timeout_millis: int = 30_000) -> bool:
    """Export everything queued so far (spans, and log-based events), waiting at most
    ``timeout_millis``; False if some of it was not delivered in that time."""
    deadline = time.monotonic() + timeout_millis / 1000
    setup = _setup
    flushed = True if setup is None else setup.force_flush(timeout_millis)
    return event_logs.force_flush(_millis_left(deadline)) and flushed


def shutdown(timeout_millis: int | None = None) -> bool:
    """Flush and stop what the library set up, within ``timeout_millis`` (default: the
    export timeout, ``OTEL_EXPORTER_OTLP_TIMEOUT`` for OTLP); False if some spans were
    not delivered. The next run or configure() starts afresh."""
    global _pinned, _setup, _private
    with _lock:
        setup, _setup, _pinned, _private = _setup, None, None, None
        retiring = list(_retiring)
        _retiring.clear()
        if setup is not None and not setup.owns_provider:
            _adopted.discard(id(setup.provider))
    setups = [*retiring, *([] if setup is None else [setup])]
    if timeout_millis is None:
        longest = max((each.export_timeout() for each in setups), default=0.0)
        timeout_millis = int(1000 * max(longest, event_logs.export_timeout()))
    deadline = time.monotonic() + timeout_millis / 1000
    done = True
    for each in setups:
        done = each.shutdown(_millis_left(deadline)) and done
    return event_logs.shutdown(_millis_left(deadline)) and done


def set_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Send this library's spans to ``provider`` as is, with nothing added
    (None: back to the rules above). The global provider is left alone."""
    swap_tracer(None if provider is None else _tracer_of(provider))


def swap_tracer(tracer: trace.Tracer | None) -> trace.Tracer | None:
    """Pin ``tracer`` (None: unpin) and return the one pinned before, to put it back later."""
    global _pinned
    with _lock:
        previous, _pinned = _pinned, tracer
        return previous


@atexit.register
def _flush_at_exit() -> None:
    try:
        shutdown()
    except Exception:  # the interpreter is going away: never a traceback from us
        logger.debug("shutdown at exit failed", exc_info=True)
