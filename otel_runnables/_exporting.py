"""Which span processors a setup gets: the embedded store and the exporters
named by ``configure()`` arguments or the standard ``OTEL_*`` variables.

Precedence, highest first: ``configure()`` arguments, ``OTEL_EXPORTER_OTLP_TRACES_*``,
``OTEL_EXPORTER_OTLP_*``, the exporter's own defaults. With ``OTEL_TRACES_EXPORTER``
unset, OTLP is used only when an OTLP endpoint is set, so a program with no
settings exports to the embedded store alone and never waits on a server.

Every exporter sits behind a ``BoundedBatchSpanProcessor`` whose export timeout
bounds flush and shutdown: the OTLP timeout (``timeout=``,
``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT``, ``OTEL_EXPORTER_OTLP_TIMEOUT``; seconds, as
the Python SDK reads them; 10 by default) for OTLP, ``OTEL_BSP_EXPORT_TIMEOUT``
(milliseconds, 30000) for the others. ``OTEL_BSP_SCHEDULE_DELAY`` (1000 ms here:
pending spans are worth little if they wait the SDK's 5 s), ``OTEL_BSP_MAX_QUEUE_SIZE``
(2048) and ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` (512) are honoured.

"""

from __future__ import annotations

import importlib
import logging
import math
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from otel_runnables._errors import ConfigurationError
from otel_runnables._export_health import BoundedBatchSpanProcessor, CountingExporter
from otel_runnables._store import LocalStoreSpanProcessor, default_store_path

__all__ = [
    "ConfigurationError",
    "ExportSettings",
    "LOGS",
    "Protocol",
    "Signal",
    "TRACES",
    "build_processors",
    "env_number",
    "exporter_names",
    "otlp_exporter",
    "COMPRESSIONS",
    "EXPORTERS",
    "PROTOCOLS",
    "otlp_timeout",
    "store_path_setting",
]

logger = logging.getLogger(__name__)

Protocol = Literal["http/protobuf", "grpc"]
PROTOCOLS: tuple[str, ...] = ("http/protobuf", "grpc")
EXPORTERS = ("otlp", "console", "none")
COMPRESSIONS = ("gzip", "deflate", "none")
# pending spans are worth little if they wait the SDK's default 5 s in the queue
_LIVE_SCHEDULE_DELAY_MS = 1000
_OTLP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ExportSettings:
    """What ``configure()`` was asked for; None means "from the environment"."""

    exporters: Sequence[str] | None = None
    endpoint: str | None = None
    protocol: str | None = None
    headers: Mapping[str, str] | None = None
    timeout: float | None = None
    compression: str | None = None
    certificate_file: str | None = None
    extra_exporters: Sequence[SpanExporter] = field(default_factory=tuple)


@dataclass(frozen=True)
class Signal:
    """What differs between exporting spans and exporting log records: the variables'
    names, the OTLP/HTTP path and the exporter classes; the rules are the same."""

    name: str  # "traces" or "logs", as in OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_TRACES_*
    grpc_exporter: str  # "module:class"
    http_exporter: str

    @property
    def exporter_variable(self) -> str:
        return f"OTEL_{self.name.upper()}_EXPORTER"

    def variables(self, suffix: str) -> tuple[str, str]:
        """The signal's own variable, then the shared one: ``OTEL_EXPORTER_OTLP_[SIGNAL_]<suffix>``."""
        return f"OTEL_EXPORTER_OTLP_{self.name.upper()}_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}"

    def http_url(self, endpoint: str) -> str:
        # the base endpoint gets /v1/<signal> appended, as OTEL_EXPORTER_OTLP_ENDPOINT does
        path = f"/v1/{self.name}"
        stripped = endpoint.rstrip("/")
        return stripped if stripped.endswith(path) else f"{stripped}{path}"


TRACES = Signal(
    "traces",
    grpc_exporter="opentelemetry.exporter.otlp.proto.grpc.trace_exporter:OTLPSpanExporter",
    http_exporter="opentelemetry.exporter.otlp.proto.http.trace_exporter:OTLPSpanExporter",
)
LOGS = Signal(
    "logs",
    grpc_exporter="opentelemetry.exporter.otlp.proto.grpc._log_exporter:OTLPLogExporter",
    http_exporter="opentelemetry.exporter.otlp.proto.http._log_exporter:OTLPLogExporter",
)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def exporter_names(settings: ExportSettings, signal: Signal = TRACES) -> list[str]:
    """The exporters to use: the argument, else ``OTEL_<SIGNAL>_EXPORTER``, else
    ``otlp`` only when an endpoint is configured."""
    if settings.exporters is not None:
        names = [str(name).strip().lower() for name in settings.exporters]
        source = "configure(exporters=...)"
    else:
        raw = _env(signal.exporter_variable)
        if raw is None:
            endpoint = settings.endpoint or _env(*signal.variables("ENDPOINT"))
            return ["otlp"] if endpoint else []
        names = [part.strip().lower() for part in raw.split(",") if part.strip()]
        source = signal.exporter_variable
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ConfigurationError(
            f"{source} names unknown exporter(s) {unknown}; valid: {', '.join(EXPORTERS)}"
        )
    return [name for name in dict.fromkeys(names) if name != "none"]


def _protocol(settings: ExportSettings, signal: Signal) -> str:
    raw = settings.protocol or _env(*signal.variables("PROTOCOL"))
    protocol = (raw or "http/protobuf").strip().lower()
    if protocol not in PROTOCOLS:
        source = "protocol" if settings.protocol else f"OTEL_EXPORTER_OTLP_({signal.name.upper()}_)PROTOCOL"
        raise ConfigurationError(f"{source}={raw!r} is not supported; use one of {', '.join(PROTOCOLS)}")
    return protocol


def env_number(name: str, default: float, *, unit: str) -> float:
    """A positive number from the variable ``name``, else ``default``."""
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name}={raw!r} is not valid: expected a number of {unit} > 0")
    return value


def otlp_timeout(settings: ExportSettings, signal: Signal = TRACES) -> float:
    """Seconds one OTLP export may take: ``timeout``, else the variables, else 10."""
    if settings.timeout is not None:
        return float(settings.timeout)
    own, shared = signal.variables("TIMEOUT")
    # seconds, as the Python SDK reads them
    return env_number(own, 0.0, unit="seconds") or env_number(shared, _OTLP_TIMEOUT_S, unit="seconds")


def _otlp_endpoint_from_env(protocol: str, signal: Signal) -> None:
    """An http/protobuf endpoint from the environment must be a URL (the exporter would
    fail on every export with "No connection adapters"); gRPC takes ``host:port`` too."""
    for name in signal.variables("ENDPOINT"):
        raw = _env(name)
        if raw is None:
            continue
        parts = urllib.parse.urlsplit(raw)
        if protocol != "grpc" and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ConfigurationError(
                f"{name}={raw!r} is not valid: expected a URL starting with http:// or https://, "
                "e.g. http://localhost:4318"
            )
        return


def _exporter_class(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def otlp_exporter(settings: ExportSettings, signal: Signal = TRACES) -> Any:
    """The OTLP exporter of ``signal`` (a span or a log record exporter) for ``settings``."""
    protocol = _protocol(settings, signal)
    kwargs: dict[str, object] = {"timeout": otlp_timeout(settings, signal)}
    if settings.headers is not None:
        kwargs["headers"] = dict(settings.headers)
    if settings.endpoint is None:
        _otlp_endpoint_from_env(protocol, signal)
    compression = None if settings.compression is None else settings.compression.strip().lower()
    try:
        if protocol == "grpc":
            exporter_class = _exporter_class(signal.grpc_exporter)
            if settings.endpoint is not None:
                kwargs["endpoint"] = settings.endpoint
                kwargs["insecure"] = settings.endpoint.startswith("http://")
            if compression is not None:
                from grpc import Compression  # type: ignore[import-untyped]

                kwargs["compression"] = {
                    "gzip": Compression.Gzip,
                    "deflate": Compression.Deflate,
                    "none": Compression.NoCompression,
                }[compression]
            if settings.certificate_file is not None:
                from grpc import ssl_channel_credentials

                kwargs["credentials"] = ssl_channel_credentials(Path(settings.certificate_file).read_bytes())
            return exporter_class(**kwargs)
        from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

        exporter_class = _exporter_class(signal.http_exporter)
        if settings.endpoint is not None:
            kwargs["endpoint"] = signal.http_url(settings.endpoint)
        if compression is not None:
            kwargs["compression"] = HttpCompression(compression)
        if settings.certificate_file is not None:
            kwargs["certificate_file"] = settings.certificate_file
        return exporter_class(**kwargs)
    except ImportError as exc:
        what = "OTLP export" if signal is TRACES else f"OTLP {signal.name} export"
        raise ConfigurationError(
            f"{what} over {protocol} needs the otlp extra: pip install 'otel-runnables[otlp]' ({exc})"
        ) from exc


def _batch(exporter: SpanExporter, export_timeout: float | None = None) -> BoundedBatchSpanProcessor:
    """``exporter`` behind a batch processor; ``export_timeout`` (seconds) defaults to
    ``OTEL_BSP_EXPORT_TIMEOUT``."""
    if export_timeout is None:
        export_timeout = env_number("OTEL_BSP_EXPORT_TIMEOUT", 30_000, unit="milliseconds") / 1000
    delay_ms = env_number("OTEL_BSP_SCHEDULE_DELAY", _LIVE_SCHEDULE_DELAY_MS, unit="milliseconds")
    return BoundedBatchSpanProcessor(
        CountingExporter(exporter),
        export_timeout=export_timeout,
        schedule_delay=delay_ms / 1000,
        max_queue_size=int(env_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048, unit="spans")),
        max_export_batch_size=int(env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, unit="spans")),
    )


def store_path_setting(store: bool | str | os.PathLike[str] | None) -> Path | None:
    """Where the embedded store writes: ``store`` (False: nowhere; a path: there), else
    ``OTEL_RUNNABLES_STORE`` / the default location."""
    if store is False:
        return None
    if store is None or store is True:
        return default_store_path()
    return Path(store)


def build_processors(settings: ExportSettings, store_path: Path | None) -> list[SpanProcessor]:
    """The store's processor first (it never blocks), then one batch processor per exporter."""
    processors: list[SpanProcessor] = []
    if store_path is not None:
        processors.append(LocalStoreSpanProcessor(store_path))
    for name in exporter_names(settings):
        if name == "otlp":
            processors.append(_batch(otlp_exporter(settings), otlp_timeout(settings)))
        elif name == "console":
            processors.append(_batch(ConsoleSpanExporter()))
    processors.extend(_batch(exporter) for exporter in settings.extra_exporters)
    return processors
