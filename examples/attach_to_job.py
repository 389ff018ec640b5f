"""Attach to a background job that is already running and follow its
progress from the start, as an HTTP endpoint streaming to a browser would.

The job has done two of its four steps when the follower attaches:
``since="start"`` replays those from the job's record (the embedded store),
then the follower gets the rest live. Without it (``since="now"``, the
default) it would see steps 3 and 4 only.

    .venv/bin/python examples/attach_to_job.py
"""

from __future__ import annotations

import asyncio
import uuid

from otel_runnables import RunnableLambda, adispatch_custom_event, subscribe


@RunnableLambda
async def nightly_import(files: list[str]) -> int:
    for number, name in enumerate(files, start=1):
        await asyncio.sleep(0.2)  # the real work
        await adispatch_custom_event("progress", {"step": number, "total": len(files), "file": name})
    return len(files)


async def follow(run_id: uuid.UUID) -> None:
    """What the progress endpoint does: attach by id, relay the progress events."""
    async with subscribe(run_id, since="start", include_types=["progress"]) as events:
        async for event in events:
            data = event["data"]
            print(f"  progress {data['step']}/{data['total']}: {data['file']}")


async def main() -> None:
    run_id = uuid.uuid4()  # the launcher picks the id (a real service would store it)
    job = asyncio.create_task(
        nightly_import.ainvoke(["a.csv", "b.csv", "c.csv", "d.csv"], {"run_id": run_id})
    )
    await asyncio.sleep(0.5)  # the job has been running for a while: steps 1 and 2 are done
    print(f"attaching to run {run_id}: steps so far from its record, then live")
    await follow(run_id)
    print("job returned", await job)


if __name__ == "__main__":
    asyncio.run(main())
