"""The demo job ``otel-runnables demo`` runs: a small ETL pipeline built from
runnables, reporting progress with custom events, traced to the embedded store
as service ``otel-runnables-demo`` (unless the environment names the service)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector

from otel_runnables import RunnableLambda, RunnableSequence, dispatch_custom_event
from otel_runnables._telemetry import TelemetrySetup

__all__ = ["DEMO_SERVICE_NAME", "build_job", "resource_service_name", "run_job", "service_name"]

DEMO_SERVICE_NAME = "otel-runnables-demo"


def service_name() -> str | None:
    """The service name for the provider the demo builds: ``otel-runnables-demo``,
    or None when ``OTEL_SERVICE_NAME`` (or ``service.name`` in
    ``OTEL_RESOURCE_ATTRIBUTES``) names it, so the SDK's reading of them stands."""
    named = OTELResourceDetector().detect().attributes.get(SERVICE_NAME)
    return None if named else DEMO_SERVICE_NAME


def resource_service_name(setup: TelemetrySetup) -> str:
    """The service name the spans carry: the provider's resource's."""
    resource = getattr(setup.provider, "resource", None)
    named = None if resource is None else resource.attributes.get(SERVICE_NAME)
    return str(named) if named else "(set by the application's provider)"


def build_job(steps: int, delay: float) -> RunnableSequence:
    """fetch -> transform (``steps`` chunks, a ``progress`` event each) -> load."""

    def fetch(source: dict[str, Any]) -> list[int]:
        dispatch_custom_event("progress", {"step": 1, "total": 1, "message": f"read {source['path']}"})
        time.sleep(delay)
        return list(range(steps))

    def transform(rows: list[int]) -> list[int]:
        out = []
        for index, row in enumerate(rows, start=1):
            time.sleep(delay)
            out.append(row * row)
            dispatch_custom_event(
                "progress", {"step": index, "total": len(rows), "message": f"chunk {index} of {len(rows)}"}
            )
        return out

    def load(rows: list[int]) -> dict[str, int]:
        time.sleep(delay)
        dispatch_custom_event("progress", {"percent": 100, "message": f"wrote {len(rows)} rows"})
        return {"rows": len(rows), "checksum": sum(rows)}

    job = RunnableLambda(fetch) | RunnableLambda(transform) | RunnableLambda(load)
    return job.with_config(run_name="nightly_etl", tags=["demo", "etl"], metadata={"team": "data"})  # type: ignore[return-value]


def run_job(run_id: uuid.UUID, steps: int = 8, delay: float = 0.4) -> dict[str, int]:
    """Run the demo job as run ``run_id`` (so a follower knows what to look for)."""
    result: dict[str, int] = build_job(steps, delay).invoke({"path": "data/orders.csv"}, {"run_id": run_id})
    return result
