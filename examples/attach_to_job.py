"""Attach to a background job that is already running and follow its
progress, as an HTTP endpoint streaming to a browser would.

    .venv/bin/python examples/attach_to_job.py
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from otel_runnables import BaseCallbackHandler, RunnableLambda, adispatch_custom_event, subscribe


class RememberRunId(BaseCallbackHandler):
    """The job's launcher keeps the run id (a real service would store it)."""

    def __init__(self) -> None:
        self.run_id: uuid.UUID | None = None

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        if kwargs["parent_run_id"] is None:
            self.run_id = kwargs["run_id"]


@RunnableLambda
async def nightly_import(files: list[str]) -> int:
    for number, name in enumerate(files, start=1):
        await asyncio.sleep(0.2)  # the real work
        await adispatch_custom_event("progress", {"step": number, "total": len(files), "file": name})
    return len(files)


async def follow(run_id: uuid.UUID) -> None:
    """What the progress endpoint does: attach by id, relay progress events."""
    async with subscribe(run_id, include_types=["progress"]) as events:
        async for event in events:
            data = event["data"]
            print(f"  progress {data['step']}/{data['total']}: {data['file']}")


async def main() -> None:
    launcher = RememberRunId()
    job = asyncio.create_task(
        nightly_import.ainvoke(["a.csv", "b.csv", "c.csv", "d.csv"], {"callbacks": [launcher]})
    )
    await asyncio.sleep(0.3)  # the job has been running for a while
    assert launcher.run_id is not None
    print(f"attaching to run {launcher.run_id}")
    await follow(launcher.run_id)
    print("job returned", await job)


if __name__ == "__main__":
    asyncio.run(main())
