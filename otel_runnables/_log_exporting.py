"""Where log-based events are exported: the log exporters ``configure()``
arguments or the standard variables name, as `otel_runnables._exporting` does
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
from collections.abc import Sequence

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    ConsoleLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
)

from otel_runnables._export_health import CountedExport
from otel_runnables._exporting import (
    LOGS,
    ExportSettings,
    env_number,
    exporter_names,
    otlp_exporter,
    otlp_timeout,
)

__all__ = ["CountingLogExporter", "build_log_exporters", "log_export_timeout", "log_exporter_names"]

logger = logging.getLogger(__name__)


def log_exporter_names(settings: ExportSettings) -> list[str]:
    """``configure(exporters=...)``, else ``OTEL_LOGS_EXPORTER``, else ``otlp``
    only when an endpoint is configured."""
    return exporter_names(settings, LOGS)


def log_export_timeout(settings: ExportSettings, names: Sequence[str]) -> float:
    """Seconds one export may take, for the longest of ``names``' exporters (0 with none)."""
    timeouts = [
        otlp_timeout(settings, LOGS)
        if name == "otlp"
        else env_number("OTEL_BLRP_EXPORT_TIMEOUT", 30_000, unit="milliseconds") / 1000
        for name in names
    ]
    return max(timeouts, default=0.0)


def build_log_exporters(settings: ExportSettings) -> list[CountingLogExporter]:
    """The log exporters to use, each behind a failure counter."""
    return [
        CountingLogExporter(otlp_exporter(settings, LOGS) if name == "otlp" else ConsoleLogRecordExporter())
        for name in log_exporter_names(settings)
    ]


class CountingLogExporter(
    CountedExport[Sequence[ReadableLogRecord], LogRecordExportResult], LogRecordExporter
):
    """Wraps a log exporter; ``failed`` counts the records it did not deliver,
    the first failure logged at once and the total at shutdown."""

    def __init__(self, exporter: LogRecordExporter) -> None:
        super().__init__(
            exporter, "log records", LogRecordExportResult.SUCCESS, LogRecordExportResult.FAILURE, logger
        )
