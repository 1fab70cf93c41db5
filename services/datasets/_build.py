"""Building a data set version: read the accepted records, select, export, store.

A version is written under ``datasets/<collection>/<version>/``: ``train.jsonl``,
``eval.jsonl`` and, last, ``manifest.json`` (so a version with a manifest is complete).
``version`` is a short hash of the selected records (their ids and content hashes), the
settings and the format, so the same records and settings give the same version and the
same bytes: the files hold no timestamps, rows are sorted by record id, and a version that
already has a manifest is not written again.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syllabus.contracts import (
    HEADER_COLLECTION,
    HUMPBACK_AUGMENTED_SYSTEM,
    HUMPBACK_SEED_SYSTEM,
    RECORDS_ACCEPTED,
    TOOLS_ANNOTATED,
    DatasetBuilt,
    DatasetRequested,
    Exporter,
    PermanentError,
    QARecord,
    ToolTrajectory,
    content_id,
    sha256_hex,
)

from ..runtime import Runtime, default_embedder, replay
from ..runtime._records import chunk_text, dropped_occurrences
from ._select import EvalSet, Progress, Selection, SelectOptions, eval_set_from_bytes, select
from ._select import split_eval as _split_eval

__all__ = [
    "BuildRefused",
    "BuildResult",
    "build",
    "build_dataset",
    "dataset_prefix",
    "find_exporter",
    "load_accepted",
    "load_eval_set",
    "record_hash",
    "request_options",
]

log = logging.getLogger("syllabus.datasets")

#: options of a ``DatasetRequested`` that are not selection settings
_BUILD_OPTIONS = {"decontaminate", "synthetic", "closed_book", "humpback_tags"}

QUALITY_DEFINITION = (
    "mean of the record's known scores, each divided by its scale and clipped to 0..1 "
    "(scales in settings.selection.quality_scores); 1.0 when it has none")


class BuildRefused(PermanentError, ValueError):
    """A request that builds nothing, the same way on every try: ``reason`` is
    ``no_accepted_records`` or ``invalid_request`` (``DatasetFailed``'s reasons)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def dataset_prefix(collection: str, version: str) -> str:
    return f"datasets/{collection}/{version}/"


def record_hash(record: QARecord) -> str:
    """The content hash of a record as it is exported (the run id is not exported)."""
    return content_id(record.model_dump(mode="json", exclude={"run_id"}))


@dataclass
class BuildResult:
    event: DatasetBuilt
    manifest: dict[str, Any]
    #: False when the version was already in the store (nothing was written)
    written: bool
    selection: Selection


async def load_accepted(rt: Runtime, collection: str) -> list[QARecord]:
    """The collection's accepted records from ``syllabus.records.accepted``, and its solved
    tool-call trajectories from ``syllabus.tools.annotated`` as records of kind ``tool``,
    one per record id (the latest message wins), sorted by record id.

    Records of a chunk occurrence that de-duplication dropped are left out: an occurrence
    may be announced and later superseded by the same or a near text in a document
    submitted before it, so what a build selects does not depend on the order in which
    documents were handled (a crash and resume builds the same version as a clean run)."""
    dropped = await dropped_occurrences(rt, collection)
    latest: dict[str, QARecord] = {}
    for m in await replay(rt.bus, RECORDS_ACCEPTED):
        header = (m.headers or {}).get(HEADER_COLLECTION)
        if header is not None and header != collection:
            continue
        rec = QARecord.model_validate_json(m.data)
        if rec.collection != collection:
            continue
        if rec.chunk_id and rec.lineage is not None and \
                (rec.chunk_id, rec.lineage.doc_id) in dropped:
            continue
        latest[rec.record_id] = rec
    # the api-annotator's solved tool-call trajectories join them (kind "tool"); unsolved
    # ones are kept on the bus for the record but never trained on
    for m in await replay(rt.bus, TOOLS_ANNOTATED):
        header = (m.headers or {}).get(HEADER_COLLECTION)
        if header is not None and header != collection:
            continue
        traj = ToolTrajectory.model_validate_json(m.data)
        if traj.collection == collection and traj.solved and (traj.final_answer or "").strip():
            latest[traj.trajectory_id] = traj.as_record()
    return [latest[k] for k in sorted(latest)]


def find_exporter(rt: Runtime, fmt: str) -> tuple[Exporter, dict[str, str]]:
    """The first registered exporter that writes ``fmt``, and who registered it."""
    for reg in rt.plugins.objects("register_exporters"):
        if fmt in reg.obj.formats:
            return reg.obj, {"name": reg.name, "plugin": reg.plugin, "version": reg.version}
    raise BuildRefused("invalid_request", f"no installed exporter writes the format {fmt!r}")


async def load_eval_set(rt: Runtime, ref: str, *, n: int,
                        allow_local_files: bool) -> EvalSet:
    """An evaluation set named by a store key or (when ``allow_local_files``: the CLI, not
    the bus service) a local file path."""
    path = Path(ref).expanduser()
    if allow_local_files and path.is_file():
        data = await asyncio.to_thread(path.read_bytes)
        source = str(path)
    else:
        try:
            exists = await rt.to_thread(rt.store.exists, ref)
        except ValueError as exc:  # not a valid key
            exists = False
            detail = f" ({exc})"
        else:
            detail = ""
        if not exists:
            where = "a local file or a store key" if allow_local_files else "a store key"
            raise BuildRefused("invalid_request", f"the evaluation set {ref!r} to "
                               f"decontaminate against is not {where}{detail}")
        data = await rt.to_thread(rt.store.get, ref)
        source = f"store:{ref}"
    return await asyncio.to_thread(eval_set_from_bytes, data, source=source, n=n)


def request_options(request: DatasetRequested) -> SelectOptions:
    """The selection settings of a request: its ``options`` (less ``decontaminate`` and
    ``synthetic``), its ``target_size`` and ``seed``."""
    opts = {k: v for k, v in request.options.items() if k not in _BUILD_OPTIONS}
    if request.target_size is not None:
        opts["target_size"] = request.target_size
    opts["seed"] = request.seed
    try:
        return SelectOptions(**opts)
    except Exception as exc:
        raise BuildRefused("invalid_request", f"invalid data set options: {exc}") from exc


def _takes(exporter: Exporter, name: str) -> bool:
    """Whether the exporter's ``export`` has the keyword ``name`` (a third-party exporter
    written before it was added is called as before)."""
    try:
        params = inspect.signature(exporter.export).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                 for p in params.values())


async def step_by_step_contexts(rt: Runtime, records: Iterable[QARecord]) -> dict[str, str]:
    """The source chunks' texts (chunk id -> text) of the records whose step-by-step input
    carries one, read concurrently; a chunk not in the store is left out (its rows get the
    question alone, and the log says so)."""
    from syllabus.plugins.exporters.standard import takes_context

    ids = sorted({r.chunk_id for r in records if r.chunk_id and takes_context(r)})
    texts = await asyncio.gather(*(chunk_text(rt, chunk_id) for chunk_id in ids))
    return {i: t for i, t in zip(ids, texts, strict=True) if t is not None}


def _export(exporter: Exporter, records: list[QARecord], fmt: str,
            **extra: Any) -> tuple[bytes, int]:
    buf = io.BytesIO()
    rows = exporter.export(records, fmt=fmt, out=buf,
                           **{k: v for k, v in extra.items() if _takes(exporter, k)})
    return buf.getvalue(), rows


def _sources(records: Iterable[QARecord]) -> dict[str, Any]:
    docs: dict[str, dict[str, Any]] = {}
    kinds: Counter[str] = Counter()
    techniques: Counter[str] = Counter()
    teachers: Counter[str] = Counter()
    #: records by the language of their source chunk ("und" when it could not be told;
    #: records without a source chunk, such as tool trajectories, are not counted)
    languages: Counter[str] = Counter()
    for r in records:
        kinds[r.kind] += 1
        techniques[f"{r.technique.name}@{r.technique.version}"] += 1
        teachers[f"{r.teacher.kind}:{r.teacher.model}"] += 1
        if r.lineage is not None:
            d = docs.setdefault(r.lineage.doc_id, {"filename": r.lineage.filename, "records": 0})
            d["records"] += 1
            languages[r.lineage.language or "und"] += 1
    return {"documents": dict(sorted(docs.items())), "kinds": dict(sorted(kinds.items())),
            "languages": dict(sorted(languages.items())),
            "techniques": dict(sorted(techniques.items())),
            "teachers": dict(sorted(teachers.items()))}


def humpback_tags(records: list[QARecord]) -> tuple[list[QARecord], dict[str, Any] | None]:
    """Humpback's tagging (§2.3): when some records carry S_w (the ``backtranslation``
    technique's augmented examples), every record with no system prompt of its own --
    the seed side: qa-pairs, rationales, anti-sycophancy examples -- gets S_a, and the
    manifest names S_a as the system prompt to ask the model with. Tool trajectories
    keep their own system turn. Nothing changes when no record carries S_w."""
    augmented = sum(r.system == HUMPBACK_AUGMENTED_SYSTEM for r in records)
    if not augmented:
        return records, None
    out, seed = [], 0
    for r in records:
        if r.system is None and r.kind != "tool":
            r = r.model_copy(update={"system": HUMPBACK_SEED_SYSTEM})
            seed += 1
        out.append(r)
    return out, {"augmented": augmented, "seed": seed,
                 "augmented_system": HUMPBACK_AUGMENTED_SYSTEM,
                 "seed_system": HUMPBACK_SEED_SYSTEM,
                 "inference_system": HUMPBACK_SEED_SYSTEM}


async def build(rt: Runtime, request: DatasetRequested, *, synthetic: Iterable[QARecord] = (),
                exporter: Exporter | None = None, embedder: Any | None = None,
                allow_local_files: bool = False,
                progress: Progress | None = None) -> BuildResult:
    """Build (or find) the data set version a request asks for.

    ``synthetic`` adds anti-sycophancy records to the mix (so does the request's
    ``options["synthetic"]``, a list of records as JSON objects); ``exporter`` overrides
    the registered one for the format; ``embedder`` the runtime's (``rt.state["embedder"]``
    or all-MiniLM-L6-v2). ``options["decontaminate"]`` names the evaluation set: a store
    key, or a local file when ``allow_local_files`` (the CLI).
    """
    opts = request_options(request)
    fmt = request.format
    closed_book = request.options.get("closed_book", False)
    if not isinstance(closed_book, bool):
        raise BuildRefused("invalid_request", f"invalid data set options: closed_book must "
                           f"be true or false, not {closed_book!r}")
    if exporter is not None:
        exporter_ref = {"name": str(getattr(exporter, "name", type(exporter).__name__)),
                        "plugin": "(given)", "version": "0"}
        if fmt not in exporter.formats:
            raise BuildRefused("invalid_request",
                               f"exporter {exporter_ref['name']!r} does not write {fmt!r}")
    else:
        exporter, exporter_ref = find_exporter(rt, fmt)
    eval_set = None
    ref = request.options.get("decontaminate")
    if ref:
        eval_set = await load_eval_set(rt, str(ref), n=opts.ngram,
                                       allow_local_files=allow_local_files)
    extra = [QARecord.model_validate(r) for r in request.options.get("synthetic") or ()]
    synthetic = [*synthetic, *extra]

    t0 = time.perf_counter()
    records = await load_accepted(rt, request.collection)
    timings = {"load": time.perf_counter() - t0}
    if not records:
        raise BuildRefused("no_accepted_records",
                           f"the collection {request.collection!r} has no accepted records "
                           f"on {RECORDS_ACCEPTED}")
    if embedder is None:
        embedder = rt.state.get("embedder") or default_embedder()
    log.info("building a data set of %s from %d accepted records", request.collection,
             len(records))
    selection = await asyncio.to_thread(select, records, embedder=embedder, options=opts,
                                        synthetic=synthetic, eval_set=eval_set,
                                        progress=progress)
    timings["embed"] = selection.embed_seconds
    timings.update((s.step, s.seconds) for s in selection.steps
                   if s.skipped is None and s.records_in)

    t0 = time.perf_counter()
    chosen = selection.all_records
    tag = request.options.get("humpback_tags", True)
    if not isinstance(tag, bool):
        raise BuildRefused("invalid_request", f"invalid data set options: humpback_tags must "
                           f"be true or false, not {tag!r}")
    chosen, humpback = humpback_tags(chosen) if tag else (chosen, None)
    train = [r for r in chosen if not _split_eval(r.record_id, eval_fraction=request.eval_fraction,
                                                  seed=request.seed)]
    evals = [r for r in chosen if _split_eval(r.record_id, eval_fraction=request.eval_fraction,
                                              seed=request.seed)]
    used_embedder = any(s.step in ("semantic_duplicate", "diversity") and not s.skipped
                        and s.records_in for s in selection.steps)
    settings = {
        "selection": opts.settings(),
        "eval_fraction": request.eval_fraction,
        "seed": request.seed,
        "embedder": str(getattr(embedder, "model", type(embedder).__name__))
        if used_embedder else None,
        "decontaminate": None if eval_set is None else {
            "sha256": eval_set.sha256, "ngram": eval_set.n, "ngrams": len(eval_set.grams)},
    }
    if selection.approximate_steps:  # neighbours from an HNSW graph, not exact products
        from ._ann import describe

        settings["approximate_neighbours"] = {"steps": selection.approximate_steps,
                                              "above_records": opts.ann_min_records,
                                              **describe()}
    if humpback:
        settings["humpback_tags"] = True
    if fmt == "step-by-step":  # what the predict and explain rows' input holds
        settings["step_by_step_input"] = "question" if closed_book else "question+chunk"
    hashes = [[r.record_id, record_hash(r)] for r in chosen]
    version = content_id({"format": fmt, "exporter": exporter_ref, "settings": settings,
                          "records": hashes})[:16]
    prefix = dataset_prefix(request.collection, version)

    extra: dict[str, Any] = {}
    if fmt == "step-by-step":  # the question and its chunk, unless closed_book
        extra = {"contexts": {} if closed_book else await step_by_step_contexts(rt, chosen)}
    train_bytes, train_rows = _export(exporter, train, fmt, **extra)
    eval_bytes, eval_rows = _export(exporter, evals, fmt, **extra)
    counts = {**selection.counts(len(records)), "train_records": len(train),
              "eval_records": len(evals), "train_rows": train_rows, "eval_rows": eval_rows}
    manifest_settings = dict(settings)
    if eval_set is not None:
        manifest_settings["decontaminate"] = {**settings["decontaminate"],
                                              "source": eval_set.source}
    manifest = {
        "collection": request.collection,
        "version": version,
        "format": fmt,
        "exporter": exporter_ref,
        "settings": manifest_settings,
        "counts": counts,
        "steps": [s.as_dict() for s in selection.steps],
        "synthetic": {"available": selection.synthetic_available,
                      "added": len(selection.synthetic),
                      "ratio": f"{opts.synthetic_ratio:g}:1",
                      "steps": [s.as_dict() for s in selection.synthetic_steps]},
        "sources": _sources(chosen),
        "quality": {"definition": QUALITY_DEFINITION,
                    "mean": round(sum(selection.quality.values()) / len(selection.quality), 6)
                    if selection.quality else None},
        "files": {"train.jsonl": {"rows": train_rows, "records": len(train),
                                  "bytes": len(train_bytes), "sha256": sha256_hex(train_bytes)},
                  "eval.jsonl": {"rows": eval_rows, "records": len(evals),
                                 "bytes": len(eval_bytes), "sha256": sha256_hex(eval_bytes)}},
        **({"humpback_tags": humpback} if humpback else {}),
        "train": [r.record_id for r in train],
        "eval": [r.record_id for r in evals],
    }
    timings["export"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    manifest_key = prefix + "manifest.json"
    written = False
    if await rt.to_thread(rt.store.exists, manifest_key):
        log.info("data set %s is already in the store", prefix)
        manifest = json.loads(await rt.to_thread(rt.store.get, manifest_key))
    else:
        body = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        await rt.to_thread(rt.store.put, prefix + "train.jsonl", train_bytes,
                           content_type="application/jsonl")
        await rt.to_thread(rt.store.put, prefix + "eval.jsonl", eval_bytes,
                           content_type="application/jsonl")
        await rt.to_thread(rt.store.put, manifest_key, body.encode("utf-8"),
                           content_type="application/json")
        written = True
        log.info("wrote data set %s: %d train and %d eval rows", prefix, train_rows, eval_rows)
    event = DatasetBuilt(collection=request.collection, version=version, prefix=prefix,
                         format=fmt, train_rows=train_rows, eval_rows=eval_rows,
                         counts=counts, run_id=request.run_id,
                         timings={k: round(v, 3) for k, v in
                                  {**timings, "write": time.perf_counter() - t0}.items()})
    return BuildResult(event=event, manifest=manifest, written=written, selection=selection)


async def build_dataset(rt: Runtime, request: DatasetRequested, *,
                        synthetic: Iterable[QARecord] = (), exporter: Exporter | None = None,
                        embedder: Any | None = None, allow_local_files: bool = False,
                        progress: Progress | None = None) -> DatasetBuilt:
    """``build``, returning only the ``DatasetBuilt`` event."""
    result = await build(rt, request, synthetic=synthetic, exporter=exporter,
                         embedder=embedder, allow_local_files=allow_local_files,
                         progress=progress)
    return result.event
