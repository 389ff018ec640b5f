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

import logging
import math
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from otel_runnables.errors import ConfigurationError
from otel_runnables.export_health import BoundedBatchSpanProcessor, CountingExporter

__all__ = [
    "ConfigurationError",
    "ExportSettings",
    "Protocol",
    "build_processors",
    "exporter_names",
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


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def exporter_names(settings: ExportSettings) -> list[str]:
    """The exporters to use: the argument, else ``OTEL_TRACES_EXPORTER``, else
    ``otlp`` only when an endpoint is configured."""
    if settings.exporters is not None:
        names = [str(name).strip().lower() for name in settings.exporters]
        source = "configure(exporters=...)"
    else:
        raw = _env("OTEL_TRACES_EXPORTER")
        if raw is None:
            endpoint = settings.endpoint or _env(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
            )
            return ["otlp"] if endpoint else []
        names = [part.strip().lower() for part in raw.split(",") if part.strip()]
        source = "OTEL_TRACES_EXPORTER"
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ConfigurationError(
            f"{source} names unknown exporter(s) {unknown}; valid: {', '.join(EXPORTERS)}"
        )
    return [name for name in dict.fromkeys(names) if name != "none"]


def _protocol(settings: ExportSettings) -> str:
    raw = settings.protocol or _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = (raw or "http/protobuf").strip().lower()
    if protocol not in PROTOCOLS:
        source = "protocol" if settings.protocol else "OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL"
        raise ConfigurationError(f"{source}={raw!r} is not supported; use one of {', '.join(PROTOCOLS)}")
    return protocol


def _http_traces_url(endpoint: str) -> str:
    # the base endpoint gets /v1/traces appended, as OTEL_EXPORTER_OTLP_ENDPOINT does
    stripped = endpoint.rstrip("/")
    return stripped if stripped.endswith("/v1/traces") else f"{stripped}/v1/traces"


def _env_number(name: str, default: float, *, unit: str) -> float:
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


def otlp_timeout(settings: ExportSettings) -> float:
    """Seconds one OTLP export may take: ``timeout``, else the variables, else 10."""
    if settings.timeout is not None:
        return float(settings.timeout)
    traces = _env_number("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", 0.0, unit="seconds")
    return traces or _env_number("OTEL_EXPORTER_OTLP_TIMEOUT", _OTLP_TIMEOUT_S, unit="seconds")


def _otlp_endpoint_from_env(protocol: str) -> None:
    """An http/protobuf endpoint from the environment must be a URL (the exporter would
    fail on every export with "No connection adapters"); gRPC takes ``host:port`` too."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
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


def _otlp_exporter(settings: ExportSettings) -> SpanExporter:
    protocol = _protocol(settings)
    kwargs: dict[str, object] = {"timeout": otlp_timeout(settings)}
    if settings.headers is not None:
        kwargs["headers"] = dict(settings.headers)
    if settings.endpoint is None:
        _otlp_endpoint_from_env(protocol)
    compression = None if settings.compression is None else settings.compression.strip().lower()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

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
            return GrpcExporter(**kwargs)  # type: ignore[arg-type]
        from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        if settings.endpoint is not None:
            kwargs["endpoint"] = _http_traces_url(settings.endpoint)
        if compression is not None:
            kwargs["compression"] = HttpCompression(compression)
        if settings.certificate_file is not None:
            kwargs["certificate_file"] = settings.certificate_file
        exporter: SpanExporter = HttpExporter(**kwargs)  # type: ignore[call-overload]
        return exporter
    except ImportError as exc:
        raise ConfigurationError(
            f"OTLP export over {protocol} needs the otlp extra: pip install 'otel-runnables[otlp]' ({exc})"
        ) from exc


def _batch(exporter: SpanExporter, export_timeout: float | None = None) -> BoundedBatchSpanProcessor:
    """``exporter`` behind a batch processor; ``export_timeout`` (seconds) defaults to
    ``OTEL_BSP_EXPORT_TIMEOUT``."""
    if export_timeout is None:
        export_timeout = _env_number("OTEL_BSP_EXPORT_TIMEOUT", 30_000, unit="milliseconds") / 1000
    delay_ms = _env_number("OTEL_BSP_SCHEDULE_DELAY", _LIVE_SCHEDULE_DELAY_MS, unit="milliseconds")
    return BoundedBatchSpanProcessor(
        CountingExporter(exporter),
        export_timeout=export_timeout,
        schedule_delay=delay_ms / 1000,
        max_queue_size=int(_env_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048, unit="spans")),
        max_export_batch_size=int(_env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, unit="spans")),
    )


def store_path_setting(store: bool | str | os.PathLike[str] | None) -> Path | None:
    """Where the embedded store writes: ``store`` (False: nowhere; a path: there), else
    ``OTEL_RUNNABLES_STORE`` / the default location."""
    if store is False:
        return None
    if store is None or store is True:
        from otel_runnables.store import default_store_path

        return default_store_path()
    return Path(store)


def build_processors(settings: ExportSettings, store_path: Path | None) -> list[SpanProcessor]:
    """The store's processor first (it never blocks), then one batch processor per exporter."""
    processors: list[SpanProcessor] = []
    if store_path is not None:
        from otel_runnables.store import LocalStoreSpanProcessor

        processors.append(LocalStoreSpanProcessor(store_path))
    for name in exporter_names(settings):
        if name == "otlp":
            processors.append(_batch(_otlp_exporter(settings), otlp_timeout(settings)))
        elif name == "console":
            processors.append(_batch(ConsoleSpanExporter()))
    processors.extend(_batch(exporter) for exporter in settings.extra_exporters)
    return processors
