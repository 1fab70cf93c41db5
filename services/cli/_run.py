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
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from syllabus.contracts import (
    CHUNKS_CREATED,
    CHUNKS_DROPPED,
    DATASETS_BUILT,
    DATASETS_FAILED,
    DLQ_ALL,
    DOCUMENTS_INGESTED,
    DOCUMENTS_REJECTED,
    GENERATION_FAILED,
    HEADER_COLLECTION,
    PASSED_OVER,
    QA_GENERATED,
    QA_RATIONALIZED,
    RECORDS_ACCEPTED,
    RECORDS_REJECTED,
    STREAM_NAME,
    TOOLS_ANNOTATED,
    ChunkCreated,
    ChunkDropped,
    DatasetBuilt,
    DatasetFailed,
    DatasetRequested,
    DeadLetter,
    DocumentIngested,
    DocumentRejected,
    Event,
    GenerationFailed,
    PassedOver,
    QARecord,
    ToolTrajectory,
    tool_filter_key,
)

from ..runtime import EmbeddedNats, Runtime, Settings, StoreSettings, replay, stream_position
from ..runtime._metrics import handler_delta, handler_totals
from ..runtime._records import dropped_occurrences
from ._report import RunReport
from ._services import OPT_IN, SERVICES, load_service

log = logging.getLogger("syllabus.cli")

__all__ = ["run_pipeline", "wait_drained", "write_chunks"]

E = TypeVar("E", bound=Event)


async def wait_drained(rt: Runtime, *, poll: float = 0.2, settle: int = 3,
                       timeout: float | None = None,
                       on_poll: Callable[[list[Any]], Awaitable[None]] | None = None) -> None:
    """Until every durable consumer of the stream has nothing pending and nothing
    unacknowledged, ``settle`` polls in a row. ``on_poll`` sees each poll's consumer infos."""
    deadline = None if timeout is None else time.monotonic() + timeout
    quiet = 0
    while quiet < settle:
        infos = [i for i in await rt.bus.js.consumers_info(STREAM_NAME) if i.config.durable_name]
        if on_poll is not None:
            await on_poll(infos)
        busy = [i for i in infos if i.num_pending or i.num_ack_pending]
        quiet = 0 if busy else quiet + 1
        if deadline is not None and time.monotonic() > deadline:
            names = ", ".join(f"{i.config.durable_name} ({i.num_pending} pending, "
                              f"{i.num_ack_pending} unacked)" for i in busy)
            raise TimeoutError(f"the pipeline did not drain in {timeout}s: {names}")
        await asyncio.sleep(poll)


async def _message_counts(rt: Runtime) -> dict[str, int]:
    """Messages stored per subject."""
    info = await rt.bus.js.stream_info(STREAM_NAME, subjects_filter=">")
    return dict(info.state.subjects or {})


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or token not in ("*", got[i]):
            return False
    return len(got) == len(want)


def _count(counts: dict[str, int], pattern: str) -> int:
    """Messages stored on the subjects ``pattern`` (a consumer's filter) matches."""
    return sum(n for subject, n in counts.items() if _matches(pattern, subject))


def _progress_bars(rt: Runtime, progress: Progress, baseline: dict[str, int]
                   ) -> Callable[[list[Any]], Awaitable[None]]:
    """A bar per service that has work in this run: the messages for it stored since the
    run started, and how many of them it has finished (acknowledged, or dead-lettered).
    Messages, not deliveries: a retried or redelivered message counts once."""
    tasks: dict[str, Any] = {}
    order = {name: i for i, name in enumerate(SERVICES)}

    async def update(infos: list[Any]) -> None:
        counts = await _message_counts(rt)
        for info in sorted(infos, key=lambda i: order.get(i.config.durable_name, 99)):
            name = info.config.durable_name
            subject = info.config.filter_subject or ">"
            total = max(0, _count(counts, subject) - _count(baseline, subject))
            waiting = info.num_pending + info.num_ack_pending
            if name not in tasks:
                if total == 0 and waiting == 0:
                    continue  # nothing for it in this run (no API spec: no api-annotator bar)
                tasks[name] = progress.add_task(name, total=None)
            total = max(total, waiting)
            progress.update(tasks[name], completed=total - waiting, total=total)

    return update


def _of_collection(msgs: list[Any], model: type[E], collection: str) -> list[tuple[int, E]]:
    """(stream sequence, event) of the messages that belong to ``collection``."""
    out = []
    for m in msgs:
        if (m.headers or {}).get(HEADER_COLLECTION) not in (None, collection):
            continue
        ev = model.model_validate_json(m.data)
        if getattr(ev, "collection", collection) == collection:
            out.append((m.metadata.sequence.stream, ev))
    return out


async def _run_events(rt: Runtime, subject: str, model: type[E], *, collection: str,
                      start: int) -> list[E]:
    """The collection's events on ``subject`` stored since this run started (stream
    sequence past ``start``). Everything since was done by this run, whichever run
    submitted it: a document from a killed run that was redelivered and finished now
    counts as this run's work (``report.resumed`` says how much of it there was)."""
    return [ev for _, ev in _of_collection(await replay(rt.bus, subject, after=start), model,
                                           collection)]


async def _already_there(rt: Runtime, report: RunReport, *, collection: str,
                         start: int) -> None:
    """What the collection held before this run started, apart from what the run did."""
    dropped = await dropped_occurrences(rt, collection)
    before: dict[str, set[Any]] = {"documents": set(), "chunks": set(),
                                   "accepted records": set()}
    for subject, model, what, key in (
            (DOCUMENTS_INGESTED, DocumentIngested, "documents", lambda e: e.doc_id),
            (CHUNKS_CREATED, ChunkCreated, "chunks",
             lambda e: (e.chunk_id, e.lineage.doc_id)),
            (RECORDS_ACCEPTED, QARecord, "accepted records", lambda e: e.record_id)):
        for seq, ev in _of_collection(await replay(rt.bus, subject), model, collection):
            if seq <= start:
                before[what].add(key(ev))
    before["chunks"] -= dropped
    report.before = {k: len(v) for k, v in before.items() if v}


async def _engine_check(rt: Runtime, teacher: Any, report: RunReport) -> None:
    """For the ``local`` teacher: its pace over the run (tokens over the busy time of its
    calls) next to the engine alone's on a sample of the same prompts, in the report."""
    check = getattr(getattr(teacher, "inner", None), "engine_check", None)
    ts = report.teacher_stats
    if check is None or not ts.get("busy_seconds"):
        return
    try:
        alone = await rt.to_thread(check)
    except Exception as exc:  # noqa: BLE001 - a figure for the report, never a failed run
        report.warnings.append(f"the engine check of the local teacher failed: {exc}")
        return
    if not alone:
        return
    run_tps = (ts["prompt_tokens"] + ts["completion_tokens"]) / ts["busy_seconds"]
    ts["engine"] = {"run_tokens_per_s": run_tps, "alone": alone,
                    "vs_engine_alone": run_tps / alone["tokens_per_s"]
                    if alone["tokens_per_s"] else None}


async def default_format(rt: Runtime, collection: str, *, train: bool) -> tuple[str, str]:
    """The data set format when ``--format`` is not given, and why: ``step-by-step`` when
    the run trains and its records have rationales, so ``--train`` fits distilling
    step-by-step's multi-task loss (Hsieh et al. 2023); ``openai`` otherwise."""
    if not train:
        return "openai", ""
    from ..datasets._build import load_accepted

    records = await load_accepted(rt, collection)
    with_rationale = sum(1 for r in records if r.rationale)
    if with_rationale:
        return "step-by-step", (f"{with_rationale} of {len(records)} records have a "
                                "rationale, so --train fits the multi-task loss; "
                                "--format openai trains the answers alone")
    return "openai", "no record has a rationale"


def _warm_embedder(rt: Runtime) -> None:
    """Load the data set builder's embedder in the background while the pipeline runs,
    when the run's selection will need it (semantic dedup or a diversity subset), so the
    build at the end does not wait for the model: on ``examples/bees`` loading it was
    most of the dataset-builder's time, after the teacher had gone idle. A failure here
    is left for the build to report, where it names the step."""
    from ..datasets import request_options
    from ..runtime._embedder import default_embedder

    ds = rt.settings.datasets
    try:
        opts = request_options(DatasetRequested(collection=rt.settings.collection,
                                                format="openai", target_size=ds.target_size,
                                                options=dict(ds.options)))
    except Exception:  # noqa: BLE001 - invalid options are the build's to report
        return
    if opts.semantic_threshold is None and opts.target_size is None:
        return
    embedder = rt.state.get("embedder") or default_embedder()
    warm = getattr(embedder, "warm", None)
    if warm is None:
        return

    def go() -> None:
        try:
            warm()
        except Exception as exc:  # noqa: BLE001 - the build raises it again, by name
            log.debug("embedder warm-up failed: %s", exc)

    threading.Thread(target=go, name="embedder-warm-up", daemon=True).start()


async def run_pipeline(paths: Sequence[Path], *, collection: str, out: Path,
                       settings: Settings, console: Console, fmt: str | None = None,
                       timeout: float | None = None, train: bool = False,
                       serve: bool = False, base_model: str | None = None,
                       train_job_prefix: str | None = None) -> RunReport:
    """The run (see ``syllabus run``); ``train_job_prefix``: the training job's id is
    derived from what it trains (``train_after_run``), so a rerun reuses its model."""
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
        if settings.teacher.kind == "local":
            # the llama.cpp server's log beside the run's other output; as many requests
            # in flight as the engine serves at once (its slots; two for llama-cpp-python,
            # which serves one at a time), so it stays busy without long queues
            from syllabus.plugins.teachers.local import engine_for

            settings.teacher.options.setdefault("log_dir", str(out))
            if "concurrency" not in settings.teacher.model_fields_set:
                settings.teacher.concurrency = engine_for(settings.teacher.options)[1]
            if "timeout" not in settings.teacher.model_fields_set:
                settings.teacher.timeout = 600.0  # a call may wait behind another one
        if serve:  # the embedded Triton's files under --out
            from ._run_serve import prepare_settings
            prepare_settings(settings, out)
        rt = Runtime.create(settings, client_name=f"syllabus-run-{run_id}")
        for name in SERVICES:
            if name in OPT_IN and not ((train and name == "trainer")
                                       or (serve and name == "server")):
                continue  # mounted only when asked (syllabus run --serve, --train)
            rt.bus.broker.include_router(load_service(name).build_router(rt))
        await rt.bus.start()
        _warm_embedder(rt)
        # the stream's position before this run's first message: what follows is its work
        start = await stream_position(rt.bus)
        handled = handler_totals()  # the services' handler time before this run
        try:
            with Progress(TextColumn("[bold]{task.description:<14}"), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                          transient=False) as progress:
                baseline = await _message_counts(rt)
                submit = progress.add_task("submitting", total=len(files))
                spec_ids: list[str] = []
                for path in files:
                    res = await submit_path(rt, path, collection=collection, run_id=run_id)
                    if res.outcome == "duplicate":
                        report.already_submitted += 1
                    elif res.kind == "spec" and res.outcome == "submitted":
                        report.specs_submitted += 1
                    if res.kind == "spec" and res.outcome != "rejected":
                        spec_ids.append(res.doc_id)
                    elif res.outcome != "duplicate":
                        report.submitted += 1
                    progress.advance(submit)
                t_submitted = time.perf_counter()
                report.timings["submit_seconds"] = t_submitted - t0
                bars = _progress_bars(rt, progress, baseline)
                await wait_drained(rt, poll=0.25, timeout=timeout, on_poll=bars)
                # then the data set version: augmenters, selection, export
                ds = rt.settings.datasets
                if fmt is None:
                    fmt, report.format_reason = await default_format(rt, collection,
                                                                     train=train)
                await rt.bus.publish(DatasetRequested(
                    collection=collection, format=fmt, target_size=ds.target_size,
                    eval_fraction=ds.eval_fraction, options=dict(ds.options), run_id=run_id))
                await wait_drained(rt, poll=0.25, timeout=timeout, on_poll=bars)
            report.timings["drain_seconds"] = time.perf_counter() - t_submitted
            spent = handler_delta(handled)  # in pipeline order
            report.services = {k: spent.pop(k) for k in list(SERVICES) if k in spent} | spent

            since = {"collection": collection, "start": start}
            for ev in await _run_events(rt, DOCUMENTS_INGESTED, DocumentIngested, **since):
                report.add_ingested(ev)
                if ev.run_id and ev.run_id != run_id:
                    report.resumed[ev.run_id] = report.resumed.get(ev.run_id, 0) + 1
            for ev in await _run_events(rt, DOCUMENTS_REJECTED, DocumentRejected, **since):
                report.add_rejected(ev)
            # new announcements only: a redelivered document announces again what a killed
            # run had announced, and JetStream keeps one message of each
            created = await _run_events(rt, CHUNKS_CREATED, ChunkCreated, **since)
            report.chunks_created = len(created)
            report.languages = dict(sorted(Counter(
                c.lineage.language or "und" for c in created).items()))
            for ev in await _run_events(rt, CHUNKS_DROPPED, ChunkDropped, **since):
                if ev.superseded:
                    report.chunks_superseded += 1
            for dl in await _run_events(rt, DLQ_ALL, DeadLetter, **since):
                report.dead_letters.append({"service": dl.service, "reason": dl.reason,
                                            "subject": dl.original_subject})
            for rec in await _run_events(rt, QA_GENERATED, QARecord, **since):
                report.count("question-gen", "records")
                report.count("question-gen", f"by {rec.technique.name}")
                report.tally(rec.technique.name, "made")
            for rec in await _run_events(rt, QA_RATIONALIZED, QARecord, **since):
                report.count("rationale", "records")
                report.count("rationale", "with a rationale" if rec.rationale else
                             "without a rationale")
                if rec.rationale:
                    report.tally(rt.settings.rationale.technique or "rationale", "made")
                for d in rec.decisions:  # why a record has no rationale, by kind
                    if d.filter == rt.settings.rationale.technique and d.details.get("dropped"):
                        report.count("rationale", f"dropped: {d.details['dropped']}")
            accepted = await _run_events(rt, RECORDS_ACCEPTED, QARecord, **since)
            synthetic = [r for r in accepted if r.kind == "anti_sycophancy"]

            report.count("sycophancy-filter", "records", len(accepted) - len(synthetic))
            report.count("sycophancy-filter", "accepted", len(accepted) - len(synthetic))
            if synthetic:
                report.count("augmenters", "records", len(synthetic))
                report.count("augmenters", "anti-sycophancy", len(synthetic))
            rejected = await _run_events(rt, RECORDS_REJECTED, QARecord, **since)
            for rec in [*accepted, *rejected]:
                report.add_decisions(rec)
                if rec.kind == "anti_sycophancy":
                    report.tally(rec.technique.name, "made")
            report.warn_unenforced()
            for rec in rejected:
                report.add_record_rejection(rec)
                if rec.kind != "anti_sycophancy" and any(
                        d.filter in rt.settings.filters.techniques for d in rec.decisions
                        if not d.kept):
                    report.count("sycophancy-filter", "records")
                    report.count("sycophancy-filter", "rejected")
            for ev in await _run_events(rt, PASSED_OVER, PassedOver, **since):
                report.add_passed_over(ev)
            for fail in await _run_events(rt, GENERATION_FAILED, GenerationFailed, **since):
                report.add_failure(fail)
                report.count(fail.stage, "unusable teacher output")
                if fail.stage == "rationale":
                    continue  # the record goes on without a rationale: not a rejection
                report.record_rejections[f"{fail.stage}: unusable teacher output"] = \
                    report.record_rejections.get(f"{fail.stage}: unusable teacher output", 0) + 1
            ra = report.stages.get("rationale", {})
            if ra.get("records") and not ra.get("with a rationale"):
                why = ", ".join(f"{n} {k.removeprefix('dropped: ')}" for k, n in
                                sorted(ra.items()) if k.startswith("dropped: "))
                report.warnings.append(f"no record got a rationale ({why or 'no reason given'})")
            await _already_there(rt, report, **since)
            for spec_id in spec_ids:
                await _add_api_filtering(rt, report, spec_id)
            for traj in await _run_events(rt, TOOLS_ANNOTATED, ToolTrajectory, **since):
                report.count("api-annotator", "records")  # trajectories, one per instruction
                report.count("api-annotator", f"{traj.group} "
                             f"{'solved' if traj.solved else 'unsolved'}")
            if "teacher" in rt.state:
                teacher = rt.teacher()
                report.teacher = (f"{teacher.kind} ({teacher.model})" + (
                    " — offline heuristics, no LLM was used" if teacher.kind == "extractive"
                    else ""))
                report.teacher_stats = asdict(teacher.snapshot())
                await _engine_check(rt, teacher, report)
            chunks_path = out / "chunks.jsonl"
            report.chunks_in_collection = await write_chunks(rt, collection, chunks_path)
            report.outputs["chunks"] = str(chunks_path)
            built = await _run_events(rt, DATASETS_BUILT, DatasetBuilt, **since)
            failed = await _run_events(rt, DATASETS_FAILED, DatasetFailed, **since)
            if built:
                report.add_dataset(built[-1])
                report.outputs["dataset"] = await _copy_dataset(rt, built[-1], out / "dataset")
                if train:  # the tiny model, through the real trainer (_run_train)
                    from ._run_train import train_after_run
                    report.training = await train_after_run(rt, built[-1], out=out,
                                                            run_id=run_id, console=console,
                                                            timeout=timeout,
                                                            base_model=base_model,
                                                            job_prefix=train_job_prefix)
                    if serve:  # the server deploys it; then a question through the API
                        from ._run_serve import serve_step
                        await serve_step(rt, report, dataset=f"{built[-1].collection}/"
                                         f"{built[-1].version}", timeout=timeout)
            elif failed:
                report.add_dataset_failure(failed[-1])
            else:
                report.warnings.append("no data set was built, and the dataset-builder gave "
                                       "no reason (see the dead letters above)")
        finally:
            if serve:  # stops the embedded Triton (a no-op when it never started)
                from ..server import shutdown
                await shutdown(rt)
            await rt.close()

    report.timings["total_seconds"] = time.perf_counter() - t0
    report.write(out / "report.json")
    return report


async def _add_api_filtering(rt: Runtime, report: RunReport, spec_id: str) -> None:
    """API filtering's verdicts on one spec (``tools/<spec_id>/filter.json``) in the report:
    operations kept, and the dropped ones by reason and name."""
    key = tool_filter_key(spec_id)
    if not await rt.to_thread(rt.store.exists, key):
        report.warnings.append(f"no API filtering verdicts for spec {spec_id[:12]} ({key})")
        return
    verdicts = json.loads(await rt.to_thread(rt.store.get, key)).get("verdicts", [])
    for v in verdicts:
        report.count("api filtering", "operations")
        if v.get("kept"):
            report.count("api filtering", "kept")
        else:
            report.count("api filtering", f"dropped ({v.get('reason')}): {v.get('tool')}")


async def _copy_dataset(rt: Runtime, built: DatasetBuilt, folder: Path) -> str:
    """The data set version's files from the store into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.jsonl", "eval.jsonl", "manifest.json"):
        data = await rt.to_thread(rt.store.get, f"{built.prefix.rstrip('/')}/{name}")
        (folder / name).write_bytes(data)
    return (f"{folder}/{{train,eval}}.jsonl + manifest.json ({built.format}; version "
            f"{built.version}, store: {built.prefix})")


async def write_chunks(rt: Runtime, collection: str, path: Path) -> int:
    """Every chunk of the collection, once each, with its lineage, as JSON lines (an
    occurrence that de-duplication dropped after it was announced is left out)."""
    dropped = await dropped_occurrences(rt, collection)
    seen: set[str] = set()
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for m in await replay(rt.bus, CHUNKS_CREATED):
            chunk = ChunkCreated.model_validate_json(m.data)
            if chunk.collection != collection or chunk.chunk_id in seen or \
                    (chunk.chunk_id, chunk.lineage.doc_id) in dropped:
                continue
            seen.add(chunk.chunk_id)
            fh.write(chunk.model_dump_json() + "\n")
    tmp.replace(path)
    return len(seen)
