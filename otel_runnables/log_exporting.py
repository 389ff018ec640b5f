"""Where log-based events are exported: the log exporters ``configure()``
arguments or the standard variables name, as `otel_runnables.exporting` does
for spans.

Precedence, highest first: ``configure()`` arguments, ``OTEL_EXPORTER_OTLP_LOGS_*``,
``OTEL_EXPORTER_OTLP_*``, the exporter's own defaults. With ``OTEL_LOGS_EXPORTER``
unset, OTLP is used only when an OTLP endpoint is set. The export timeout
(``timeout=``, ``OTEL_EXPORTER_OTLP_LOGS_TIMEOUT``, ``OTEL_EXPORTER_OTLP_TIMEOUT``,
10 s; ``OTEL_BLRP_EXPORT_TIMEOUT`` for the console) bounds flush and shutdown.
Each exporter's failures are counted, the first one logged at once and the
total at shutdown.
"""

from __future__ import annotations

import logging
import math
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    ConsoleLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
)

from otel_runnables.errors import ConfigurationError
from otel_runnables.exporting import EXPORTERS, PROTOCOLS, ExportSettings

__all__ = ["CountingLogExporter", "build_log_exporters", "log_export_timeout", "log_exporter_names"]

logger = logging.getLogger(__name__)

_OTLP_TIMEOUT_S = 10.0


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def log_exporter_names(settings: ExportSettings) -> list[str]:
    """``configure(exporters=...)``, else ``OTEL_LOGS_EXPORTER``, else ``otlp``
    only when an endpoint is configured."""
    if settings.exporters is not None:
        names = [str(name).strip().lower() for name in settings.exporters]
        source = "configure(exporters=...)"
    else:
        raw = _env("OTEL_LOGS_EXPORTER")
        if raw is None:
            endpoint = settings.endpoint or _env(
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
            )
            return ["otlp"] if endpoint else []
        names = [part.strip().lower() for part in raw.split(",") if part.strip()]
        source = "OTEL_LOGS_EXPORTER"
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ConfigurationError(
            f"{source} names unknown exporter(s) {unknown}; valid: {', '.join(EXPORTERS)}"
        )
    return [name for name in dict.fromkeys(names) if name != "none"]


def _seconds_from_env(name: str, *, scale: float) -> float | None:
    raw = _env(name)
    if raw is None:
        return None
    try:
        value = float(raw) * scale
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name}={raw!r} is not valid: expected a positive number")
    return value


def _otlp_timeout(settings: ExportSettings) -> float:
    if settings.timeout is not None:
        return float(settings.timeout)
    for name in ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        seconds = _seconds_from_env(name, scale=1.0)  # seconds, as the Python SDK reads them
        if seconds is not None:
            return seconds
    return _OTLP_TIMEOUT_S


def log_export_timeout(settings: ExportSettings, names: Sequence[str]) -> float:
    """Seconds one export may take, for the longest of ``names``' exporters (0 with none)."""
    timeouts = [
        _otlp_timeout(settings)
        if name == "otlp"
        else (_seconds_from_env("OTEL_BLRP_EXPORT_TIMEOUT", scale=0.001) or 30.0)
        for name in names
    ]
    return max(timeouts, default=0.0)


def build_log_exporters(settings: ExportSettings) -> list[CountingLogExporter]:
    """The log exporters to use, each behind a failure counter."""
    return [
        CountingLogExporter(_otlp_log_exporter(settings) if name == "otlp" else ConsoleLogRecordExporter())
        for name in log_exporter_names(settings)
    ]


def _protocol(settings: ExportSettings) -> str:
    raw = settings.protocol or _env("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = (raw or "http/protobuf").strip().lower()
    if protocol not in PROTOCOLS:
        source = "protocol" if settings.protocol else "OTEL_EXPORTER_OTLP_(LOGS_)PROTOCOL"
        raise ConfigurationError(f"{source}={raw!r} is not supported; use one of {', '.join(PROTOCOLS)}")
    return protocol


def _endpoint_from_env(protocol: str) -> None:
    """An http/protobuf endpoint from the environment must be a URL; gRPC takes ``host:port`` too."""
    for name in ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
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


def _otlp_log_exporter(settings: ExportSettings) -> LogRecordExporter:
    protocol = _protocol(settings)
    kwargs: dict[str, Any] = {"timeout": _otlp_timeout(settings)}
    if settings.headers is not None:
        kwargs["headers"] = dict(settings.headers)
    if settings.endpoint is None:
        _endpoint_from_env(protocol)
    compression = None if settings.compression is None else settings.compression.strip().lower()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

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
            return GrpcExporter(**kwargs)
        from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

        if settings.endpoint is not None:
            kwargs["endpoint"] = _http_logs_url(settings.endpoint)
        if compression is not None:
            kwargs["compression"] = HttpCompression(compression)
        if settings.certificate_file is not None:
            kwargs["certificate_file"] = settings.certificate_file
        exporter: LogRecordExporter = HttpExporter(**kwargs)
        return exporter
    except ImportError as exc:
        raise ConfigurationError(
            f"OTLP log export over {protocol} needs the otlp extra: "
            f"pip install 'otel-runnables[otlp]' ({exc})"
        ) from exc


def _http_logs_url(endpoint: str) -> str:
    # the base endpoint gets /v1/logs appended, as OTEL_EXPORTER_OTLP_ENDPOINT does
    stripped = endpoint.rstrip("/")
    return stripped if stripped.endswith("/v1/logs") else f"{stripped}/v1/logs"


class CountingLogExporter(LogRecordExporter):
    """Wraps a log exporter; ``failed`` counts the records it did not deliver,
    the first failure logged at once and the total at shutdown."""

    def __init__(self, exporter: LogRecordExporter) -> None:
        self.exporter = exporter
        self.failed = 0

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        try:
            result = self.exporter.export(batch)
        except Exception as exc:
            self._lost(len(batch), f"{type(exc).__name__}: {exc}")
            return LogRecordExportResult.FAILURE
        if result is not LogRecordExportResult.SUCCESS:
            self._lost(len(batch), "the exporter reported a failure")
        return result

    def _lost(self, count: int, why: str) -> None:
        first = not self.failed
        self.failed += count
        if first:
            logger.warning(
                "%s could not export %d log records (%s); "
                "further failures are counted and reported at shutdown",
                type(self.exporter).__name__,
                count,
                why,
            )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()  # type: ignore[no-untyped-call]
        if self.failed:
            name = type(self.exporter).__name__
            logger.warning("%s failed to export %d log records in all", name, self.failed)
