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
import threading
from collections.abc import Sequence
from itertools import count

from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
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

__all__ = [
    "CountingLogExporter",
    "CountingLogProcessor",
    "build_log_exporters",
    "log_export_timeout",
    "log_exporter_names",
]

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


class CountingLogProcessor(LogRecordProcessor):
    """The SDK's batch processor in front of ``exporter``, counting the records it is
    handed. At shutdown, those never exported (dropped from a full queue, or still
    queued when shutdown ended) are counted in ``unexported`` and logged: the SDK
    logs each drop, but keeps no count."""

    def __init__(self, exporter: CountingLogExporter) -> None:
        self.exporter = exporter
        self.unexported = 0
        self._batch = BatchLogRecordProcessor(exporter)
        self._handed = count()  # next() is atomic: records come from every thread
        self._settled = threading.Lock()
        self._counted = False

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        next(self._handed)
        self._batch.on_emit(log_record)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._batch.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._batch.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        self.count_unexported()

    def count_unexported(self) -> None:
        """Once, at shutdown (also when shutdown ran out of time): the records handed
        so far and not yet exported are counted and logged."""
        with self._settled:
            if self._counted:
                return
            self._counted = True
            self.unexported = max(0, next(self._handed) - self.exporter.exported)
        if self.unexported:
            logger.warning(
                "%d log records were not exported: the export queue was full (OTEL_BLRP_MAX_QUEUE_SIZE), "
                "or shutdown came first",
                self.unexported,
            )
