"""``syllabus run``: the whole pipeline in one process, on a laptop, with no network.

It starts ``nats-server`` (JetStream in ``<out>/nats``), uses a ``LocalStore`` in
``<out>/store``, mounts every service's router on one broker, submits the inputs, shows
progress, waits until every durable consumer is drained, writes the results and prints a
report. Running it again on the same ``--out`` adds no duplicates: the stream, the
de-duplication state and the store are kept there.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from syllabus.contracts import (
    CHUNKS_CREATED,
    DLQ_ALL,
    DOCUMENTS_INGESTED,
    DOCUMENTS_REJECTED,
    HEADER_RUN_ID,
    STREAM_NAME,
    ChunkCreated,
    DeadLetter,
    DocumentIngested,
    DocumentRejected,
)

from ..runtime import EmbeddedNats, Runtime, Settings, StoreSettings, replay
from ._report import RunReport
from ._services import SERVICES, load_service

__all__ = ["run_pipeline", "wait_drained"]


async def wait_drained(rt: Runtime, *, poll: float = 0.2, settle: int = 3,
                       timeout: float | None = None) -> None:
    """Until every durable consumer of the stream has nothing pending and nothing
    unacknowledged, ``settle`` polls in a row."""
    deadline = None if timeout is None else time.monotonic() + timeout
    quiet = 0
    while quiet < settle:
        infos = await rt.bus.js.consumers_info(STREAM_NAME)
        busy = [i for i in infos if i.config.durable_name and (i.num_pending or i.num_ack_pending)]
        quiet = 0 if busy else quiet + 1
        if deadline is not None and time.monotonic() > deadline:
            names = ", ".join(f"{i.config.durable_name} ({i.num_pending} pending, "
                              f"{i.num_ack_pending} unacked)" for i in busy)
            raise TimeoutError(f"the pipeline did not drain in {timeout}s: {names}")
        await asyncio.sleep(poll)


async def _idle(rt: Runtime) -> bool:
    infos = await rt.bus.js.consumers_info(STREAM_NAME)
    return not any(i.config.durable_name and (i.num_pending or i.num_ack_pending) for i in infos)


async def run_pipeline(paths: Sequence[Path], *, collection: str, out: Path,
                       settings: Settings, console: Console,
                       timeout: float | None = None) -> RunReport:
    from ..ingest import iter_files, submit_path

    out.mkdir(parents=True, exist_ok=True)
    files = list(iter_files(paths))
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    report = RunReport(run_id=run_id, collection=collection, out_dir=str(out), files=len(files))
    t0 = time.perf_counter()

    with EmbeddedNats(out / "nats") as nats:
        settings = settings.model_copy(deep=True)
        settings.collection = collection
        settings.nats.url = nats.url
        settings.store = StoreSettings(kind="local", path=out / "store")
        rt = Runtime.create(settings, client_name=f"syllabus-run-{run_id}")
        for name in SERVICES:
            rt.bus.broker.include_router(load_service(name).build_router(rt))
        await rt.bus.start()
        try:
            finished: asyncio.Queue[str] = asyncio.Queue()

            async def on_outcome(msg) -> None:
                if (msg.headers or {}).get(HEADER_RUN_ID) == run_id:
                    await finished.put(msg.subject)

            sub1 = await rt.bus.nc.subscribe(DOCUMENTS_INGESTED, cb=on_outcome)
            sub2 = await rt.bus.nc.subscribe(DOCUMENTS_REJECTED, cb=on_outcome)
            sub3 = await rt.bus.nc.subscribe(DLQ_ALL, cb=on_outcome)
            expected = 0
            with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                          transient=False) as progress:
                submit = progress.add_task("submitting", total=len(files))
                for path in files:
                    res = await submit_path(rt, path, collection=collection, run_id=run_id)
                    if res.outcome == "submitted":
                        expected += 1
                    elif res.outcome == "duplicate":
                        report.already_submitted += 1
                    else:
                        # refused before it reached the bus; its rejection event counts below
                        expected += 1
                    report.submitted += res.outcome != "duplicate"
                    progress.advance(submit)
                t_submitted = time.perf_counter()
                report.timings["submit_seconds"] = t_submitted - t0
                ingest = progress.add_task("ingesting", total=expected)
                done = 0
                while done < expected:
                    try:
                        await asyncio.wait_for(finished.get(), timeout=5.0)
                    except TimeoutError:
                        if await _idle(rt):  # nothing left to wait for
                            break
                        continue
                    done += 1
                    progress.update(ingest, completed=done)
            for sub in (sub1, sub2, sub3):
                await sub.unsubscribe()
            await wait_drained(rt, timeout=timeout)
            report.timings["drain_seconds"] = time.perf_counter() - t_submitted

            for m in await replay(rt.bus, DOCUMENTS_INGESTED):
                if (m.headers or {}).get(HEADER_RUN_ID) == run_id:
                    report.add_ingested(DocumentIngested.model_validate_json(m.data))
            for m in await replay(rt.bus, DOCUMENTS_REJECTED):
                if (m.headers or {}).get(HEADER_RUN_ID) == run_id:
                    report.add_rejected(DocumentRejected.model_validate_json(m.data))
            for m in await replay(rt.bus, DLQ_ALL):
                if (m.headers or {}).get(HEADER_RUN_ID) == run_id:
                    dl = DeadLetter.model_validate_json(m.data)
                    report.dead_letters.append({"service": dl.service, "reason": dl.reason,
                                                "subject": dl.original_subject})
            chunks_path = out / "chunks.jsonl"
            report.chunks_in_collection = await write_chunks(rt, collection, chunks_path)
            report.outputs["chunks"] = str(chunks_path)
        finally:
            await rt.bus.close()

    report.timings["total_seconds"] = time.perf_counter() - t0
    report_path = out / "report.json"
    report.outputs["report"] = str(report_path)
    report_path.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    return report


async def write_chunks(rt: Runtime, collection: str, path: Path) -> int:
    """Every chunk of the collection, once each, with its lineage, as JSON lines."""
    seen: set[str] = set()
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for m in await replay(rt.bus, CHUNKS_CREATED):
            chunk = ChunkCreated.model_validate_json(m.data)
            if chunk.collection != collection or chunk.chunk_id in seen:
                continue
            seen.add(chunk.chunk_id)
            fh.write(chunk.model_dump_json() + "\n")
    tmp.replace(path)
    return len(seen)
