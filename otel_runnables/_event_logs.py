"""Custom events as OpenTelemetry log records: log-based events.

OpenTelemetry is deprecating the Span Event API (OTEP 4430) in favour of
events as log records with an event name, tied to their span through the
context. ``OTEL_RUNNABLES_EVENTS`` (or ``configure(events=...)``) says where
each custom event goes: ``span`` (a span event on its run's span, the
default), ``log`` (a log record whose ``event_name`` is the dispatched name,
with the run's trace and span ids, the event's timestamp, the span event's
``otel_runnables.event.*`` attributes and the run id), or ``both``. In-process
consumers (handlers, ``astream_events``, the store) hear every event either way.

The logger comes the way the tracer does (see `otel_runnables._telemetry`):

1. ``set_logger_provider(p)``: records go to ``p`` as is.
2. An application's global LoggerProvider is never replaced: the logger
   ``otel_runnables`` (package version) comes from it; ``configure()`` adds
   the log exporters it was asked for to it.
3. Otherwise ``configure()`` builds an SDK LoggerProvider (the same resource
   as the tracer provider it builds) from its arguments and the standard
   variables (``OTEL_LOGS_EXPORTER``, ``OTEL_EXPORTER_OTLP_LOGS_*`` then
   ``OTEL_EXPORTER_OTLP_*``, ``OTEL_BLRP_*``) and makes it the global one.
4. With no call at all, the first log event sets the same up privately, and
   gives way to an application's provider as soon as one appears.

Which exporters a setup gets is `otel_runnables._log_exporting`'s job.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry import _logs, trace
from opentelemetry._logs import Logger, LoggerProvider, NoOpLoggerProvider, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from otel_runnables import _conventions as conventions
from otel_runnables import _settings
from otel_runnables._errors import ConfigurationError
from otel_runnables._export_health import call_within
from otel_runnables._exporting import ExportSettings
from otel_runnables._fork_safe import renew_in_child
from otel_runnables._log_exporting import (
    CountingLogExporter,
    CountingLogProcessor,
    build_log_exporters,
    log_export_timeout,
    log_exporter_names,
)
from otel_runnables._version import __version__

__all__ = [
    "EVENT_MODES",
    "LogSetup",
    "check_events_mode",
    "configure_event_logs",
    "emit_log_event",
    "events_mode",
    "export_timeout",
    "force_flush",
    "get_event_logger",
    "routing",
    "set_logger_provider",
    "shutdown",
]

logger = logging.getLogger(__name__)

EVENT_MODES = ("span", "log", "both")
_INSTRUMENTATION_NAME = "otel_runnables"


class _Routing:
    """Where custom events go; read on every event, so two plain flags."""

    __slots__ = ("span", "log")

    def __init__(self) -> None:
        self.span = True
        self.log = False

    def set(self, mode: str) -> None:
        self.span, self.log = mode != "log", mode != "span"


routing = _Routing()
routing.set(_settings.EVENTS.value)


def events_mode() -> str:
    return "both" if routing.span and routing.log else "log" if routing.log else "span"


def check_events_mode(mode: object) -> str:
    """``mode`` normalised; ConfigurationError naming it when it is not one of the modes."""
    if not isinstance(mode, str) or mode.strip().lower() not in EVENT_MODES:
        raise ConfigurationError(f"events must be one of {', '.join(EVENT_MODES)}, got {mode!r}")
    return mode.strip().lower()


# -- emitting -------------------------------------------------------------------------


_failures = 0


def emit_log_event(
    span: Span, name: str, attributes: Mapping[str, AttributeValue], time_ns: int, run_id: str
) -> None:
    """One custom event as one log record, in the context of its run's span."""
    global _failures
    record_attributes = dict(attributes)
    record_attributes[conventions.RUN_ID] = run_id
    try:
        get_event_logger().emit(
            timestamp=time_ns,
            context=trace.set_span_in_context(span),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            attributes=record_attributes,
            event_name=name,
        )
    except Exception as exc:  # a broken logging pipeline never breaks the run
        _failures += 1
        if _failures == 1:
            logger.warning(
                "could not emit custom event %r as a log record (%s: %s); "
                "further failures are counted and reported at shutdown",
                name,
                type(exc).__name__,
                exc,
            )


# -- which logger ---------------------------------------------------------------------


@dataclass
class LogSetup:
    """What the library set up for log records: the provider, the processors it
    added, and whether it built (and so shuts down) the provider."""

    provider: LoggerProvider
    processors: list[CountingLogProcessor] = field(default_factory=list)
    exporters: list[str] = field(default_factory=list)
    owns_provider: bool = False
    is_global: bool = False
    counted: list[CountingLogExporter] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Log records the exporters could not deliver so far."""
        return sum(exporter.failed for exporter in self.counted)

    @property
    def unexported(self) -> int:
        """Log records never exported (a full queue, or shutdown first): known at shutdown."""
        return sum(processor.unexported for processor in self.processors)

    export_timeout: float = 0.0
    """Seconds one export may take: what flush and shutdown wait at most."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export what the processors hold; False if not done within ``timeout_millis``
        (the SDK's log processor may outlast its timeout: it is not waited for)."""
        flushed: list[bool] = []

        def flush() -> None:
            flushed.append(all([processor.force_flush(timeout_millis) for processor in self.processors]))

        return call_within(flush, timeout_millis / 1000, "log export flush") and flushed == [True]

    def shutdown(self, timeout_millis: int | None = None) -> bool:
        """Export what is queued and stop, waiting at most ``timeout_millis`` (default:
        the export timeout); False if that was not enough."""
        seconds = self.export_timeout if timeout_millis is None else timeout_millis / 1000
        if self.owns_provider and isinstance(self.provider, SdkLoggerProvider):
            stop = self.provider.shutdown
        else:
            processors = list(self.processors)

            def stop() -> None:
                for processor in processors:
                    processor.shutdown()

        stopped = call_within(stop, seconds, "log export shutdown")
        for processor in self.processors:
            processor.count_unexported()  # now, even if their shutdown is still going
        return stopped and self.failed == 0 and self.unexported == 0


_lock = threading.RLock()
renew_in_child(globals(), "_lock", threading.RLock)
_pinned: Logger | None = None
_private: Logger | None = None  # the zero-config default's, while no application provider exists
_setup: LogSetup | None = None
_retiring: list[tuple[threading.Thread, float]] = []  # private defaults shutting down, and their timeouts


def _logger_of(provider: LoggerProvider) -> Logger:
    return provider.get_logger(_INSTRUMENTATION_NAME, __version__)


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _application_provider() -> LoggerProvider | None:
    """The application's global LoggerProvider, or None while only the API's
    stand-in is there (an explicit NoOpLoggerProvider is the application's choice)."""
    provider = _logs.get_logger_provider()
    if isinstance(provider, NoOpLoggerProvider):
        return provider
    # the API's proxy is not exported by name: it is the one provider the API package defines
    return None if type(provider).__module__.startswith("opentelemetry._logs") else provider


def get_event_logger() -> Logger:
    """The logger every log-based event is emitted with."""
    pinned = _pinned
    if pinned is not None:
        return pinned
    private = _private
    if private is not None and _application_provider() is None:
        return private
    return _resolve()


def _resolve() -> Logger:
    global _pinned, _private, _setup
    with _lock:
        if _pinned is not None:
            return _pinned
        application = _application_provider()
        if application is not None or _sdk_disabled():
            if _setup is not None and _setup.owns_provider and not _setup.is_global:
                # our private default gives way, in the background: the run that noticed never waits
                retiring = threading.Thread(
                    target=_setup.shutdown, name="otel_runnables-log-retire", daemon=True
                )
                retiring.start()
                _retiring.append((retiring, _setup.export_timeout))
                _setup, _private = None, None
            _pinned = _logger_of(NoOpLoggerProvider() if application is None else application)
            return _pinned
        if _setup is None:
            try:
                _setup = _build(ExportSettings(), _default_resource(), make_global=False)
            except Exception as exc:
                logger.error(
                    "otel_runnables could not set up log export from the environment, "
                    "so log-based events go nowhere: %s",
                    exc,
                    exc_info=not isinstance(exc, ConfigurationError),
                )
                _setup = LogSetup(provider=NoOpLoggerProvider())
                _pinned = _logger_of(_setup.provider)
                return _pinned
        _private = _logger_of(_setup.provider)
        return _private


def _default_resource() -> Resource:
    """The tracer provider's resource when the library built it, so both signals
    name the same service; else the one the environment describes."""
    from otel_runnables import _telemetry as telemetry

    setup = telemetry.current_setup()
    ours = setup is not None and setup.owns_provider
    resource = getattr(setup.provider, "resource", None) if ours and setup is not None else None
    return resource if isinstance(resource, Resource) else Resource.create({})


def _build(settings: ExportSettings, resource: Resource, *, make_global: bool) -> LogSetup:
    provider = SdkLoggerProvider(resource=resource, shutdown_on_exit=False)  # our atexit hook flushes
    setup = _pipeline(provider, settings)
    for processor in setup.processors:
        provider.add_log_record_processor(processor)
    if make_global:
        _logs.set_logger_provider(provider)
    setup.owns_provider, setup.is_global = True, make_global
    return setup


def configure_event_logs(
    mode: str | None,
    settings: ExportSettings,
    *,
    resource: Resource,
    logger_provider: LoggerProvider | None = None,
    set_global: bool = True,
) -> LogSetup | None:
    """``configure()``'s part: the events mode (None: ``OTEL_RUNNABLES_EVENTS``)
    and, when it sends events to logs, where the records go."""
    global _pinned, _private, _setup
    chosen = _settings.EVENTS.value if mode is None else check_events_mode(mode)
    if chosen != "span":
        log_exporter_names(settings)  # validate before touching anything
    with _lock:
        if _setup is not None:
            _setup.shutdown()
        _setup, _pinned, _private = None, None, None
        routing.set(chosen)
        if chosen == "span":
            return None
        application = _application_provider() if logger_provider is None else logger_provider
        if _sdk_disabled():
            _setup = LogSetup(provider=NoOpLoggerProvider())
        elif application is not None:
            _setup = _adopt(application, settings)
        else:
            _setup = _build(settings, resource, make_global=set_global)
        _pinned = _logger_of(_setup.provider)
        return _setup


def _adopt(provider: LoggerProvider, settings: ExportSettings) -> LogSetup:
    """Add the log exporters ``configure()`` was asked for to an application's provider."""
    add = getattr(provider, "add_log_record_processor", None)
    if not callable(add):
        return LogSetup(provider=provider)
    setup = _pipeline(provider, settings)
    for processor in setup.processors:
        add(processor)
    return setup


def _pipeline(provider: LoggerProvider, settings: ExportSettings) -> LogSetup:
    """One batch processor per log exporter (not added to ``provider`` yet)."""
    counted = build_log_exporters(settings)
    processors = [CountingLogProcessor(exporter) for exporter in counted]
    names = log_exporter_names(settings)
    return LogSetup(
        provider=provider,
        processors=processors,
        exporters=names,
        counted=counted,
        export_timeout=log_export_timeout(settings, names),
    )


def set_logger_provider(provider: LoggerProvider | None) -> None:
    """Send log-based events to ``provider`` as is (None: back to the rules
    above). The global provider is left alone."""
    global _pinned
    with _lock:
        _pinned = None if provider is None else _logger_of(provider)


def force_flush(timeout_millis: int = 30_000) -> bool:
    setup = _setup
    return True if setup is None else setup.force_flush(timeout_millis)


def export_timeout() -> float:
    """Seconds the log exporters' shutdown may take (0 with none)."""
    setup = _setup
    return max([0.0 if setup is None else setup.export_timeout, *(seconds for _, seconds in _retiring)])


def shutdown(timeout_millis: int | None = None) -> bool:
    """Flush and stop what the library set up for logs, within ``timeout_millis``
    (default: the export timeout); False if some records were not delivered. The
    events mode is the ``OTEL_RUNNABLES_EVENTS`` setting's again, and the next
    event or configure() starts afresh. ``otel_runnables.shutdown()`` and the
    exit call this."""
    global _pinned, _private, _setup
    with _lock:
        setup, _setup, _pinned, _private = _setup, None, None, None
        routing.set(_settings.EVENTS.value)
        retiring = list(_retiring)
        _retiring.clear()
    if _failures:
        logger.warning("%d custom events could not be emitted as log records", _failures)
    for thread, seconds in retiring:
        thread.join(seconds if timeout_millis is None else timeout_millis / 1000)
    return True if setup is None else setup.shutdown(timeout_millis)
