"""The run report: counts per stage, rejections by reason, timings, built from the
events on the bus. It counts what this run did (every event stored since it started, so a
document that a killed run left in flight and this run finished counts here, under
``resumed``), and apart from it what the collection already held (``before``)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from syllabus.contracts import (
    DatasetBuilt,
    DatasetFailed,
    DocumentIngested,
    DocumentRejected,
    GenerationFailed,
    PassedOver,
    QARecord,
)

__all__ = ["RunReport", "shorten"]


def shorten(text: str, width: int) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters, with an ellipsis
    when it was cut (never mid-word)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[:width - 1].rsplit(" ", 1)[0] if " " in text[:width - 1] else text[:width - 1]
    return cut.rstrip(" ,;:") + "…"


#: the short names of the media types the built-in parsers read
_FORMATS = {
    "application/pdf": "pdf", "text/html": "html", "application/xhtml+xml": "html",
    "text/markdown": "markdown", "text/plain": "text",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
}


def format_label(media_type: str) -> str:
    """``"pdf"`` for ``application/pdf``; a media type without a short name as it is."""
    return _FORMATS.get(media_type, media_type)


@dataclass
class RunReport:
    run_id: str
    collection: str
    out_dir: str
    teacher: str = "none (no stage used a teacher)"
    teacher_stats: dict[str, Any] = field(default_factory=dict)
    #: per filter: the scores a base model's judge gave that were recorded, not enforced
    unenforced_scores: dict[str, dict[str, int]] = field(default_factory=dict)
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    record_rejections: dict[str, int] = field(default_factory=dict)
    dataset_rows: int = 0
    dataset: dict[str, Any] = field(default_factory=dict)
    files: int = 0
    submitted: int = 0
    #: OpenAPI specs handed to the api-annotator (not counted as documents)
    specs_submitted: int = 0
    already_submitted: int = 0
    ingested: int = 0
    rejected: int = 0
    pages: int = 0
    #: pages read by OCR (no text layer)
    ocr_pages: int = 0
    bytes: int = 0
    #: documents ingested by format ("pdf", "docx", ...; other media types as they are)
    formats: dict[str, int] = field(default_factory=dict)
    chunks_created: int = 0
    #: the chunks created, by language ("und": too short to tell)
    languages: dict[str, int] = field(default_factory=dict)
    chunks_in_collection: int = 0
    chunks_dropped: dict[str, int] = field(default_factory=dict)
    #: chunks announced earlier that a document submitted before them now drops
    chunks_superseded: int = 0
    #: documents ingested with no new chunk, each with the reason
    documents_without_chunks: list[str] = field(default_factory=list)
    #: documents that an earlier run submitted and this one finished, by that run's id
    resumed: dict[str, int] = field(default_factory=dict)
    #: what the collection held before this run started
    before: dict[str, int] = field(default_factory=dict)
    #: unusable teacher output by stage, technique and reason: a count and one example
    #: of the raw output
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejections: dict[str, list[str]] = field(default_factory=dict)
    #: work a technique, filter or check was not given because of the text's language, by
    #: stage, technique and language: a count and the reason (``PassedOver``, and the
    #: records' ``passed_over`` decisions)
    passed_over: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per technique and filter: records made ("made"), decisions ("kept", "rejected",
    #: "passed over"), and unusable teacher outputs ("unusable")
    techniques: dict[str, dict[str, int]] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: per service, over the pipeline (submit to drained): messages handled and handler
    #: seconds, summed over the messages it handled at once (``handler_delta``)
    services: dict[str, dict[str, float]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    #: why the data set has its format when --format was not given (``default_format``)
    format_reason: str = ""
    #: syllabus run --train: the trained model (model_id, store_prefix) and its loss curve
    training: dict[str, Any] = field(default_factory=dict)
    #: syllabus run --serve: the server's verdict, evaluation scores, a question and answer
    serving: dict[str, Any] = field(default_factory=dict)
    #: syllabus run --teacher bootstrap: the seed run, M0 and its GGUF file (_bootstrap)
    bootstrap: dict[str, Any] = field(default_factory=dict)

    def add_ingested(self, ev: DocumentIngested) -> None:
        self.ingested += 1
        self.pages += ev.pages
        self.ocr_pages += ev.ocr_pages
        label = format_label(ev.media_type)
        self.formats[label] = self.formats.get(label, 0) + 1
        self.bytes += ev.size_bytes
        for reason, n in ev.chunks_dropped.items():
            self.chunks_dropped[reason] = self.chunks_dropped.get(reason, 0) + n
        self.timings["parse_seconds"] = self.timings.get("parse_seconds", 0.0) + ev.parse_seconds
        self.timings["chunk_seconds"] = self.timings.get("chunk_seconds", 0.0) + ev.chunk_seconds
        self.warnings.extend(f"{ev.filename}: {w}" for w in ev.warnings)
        if not ev.chunk_ids:
            why = ", ".join(f"{n} {reason.replace('_', ' ')}"
                            for reason, n in sorted(ev.chunks_dropped.items()))
            self.documents_without_chunks.append(
                f"{ev.filename}: no new chunk ({why or 'the chunker made none'})")

    def add_rejected(self, ev: DocumentRejected) -> None:
        self.rejected += 1
        self.rejections.setdefault(ev.reason.value, []).append(f"{ev.filename}: {ev.detail}")

    def count(self, stage: str, what: str, n: int = 1) -> None:
        self.stages.setdefault(stage, {})
        self.stages[stage][what] = self.stages[stage].get(what, 0) + n

    def tally(self, technique: str, what: str, n: int = 1) -> None:
        entry = self.techniques.setdefault(technique, {})
        entry[what] = entry.get(what, 0) + n

    def _pass_over(self, key: str, detail: str, unit: str) -> None:
        entry = self.passed_over.setdefault(key, {"count": 0, "detail": detail, "unit": unit})
        entry["count"] += 1

    def add_passed_over(self, ev: PassedOver) -> None:
        """A chunk or record a technique was not given (its language)."""
        self._pass_over(f"{ev.stage} {ev.technique.name} ({ev.language or 'und'})", ev.detail,
                        "record" if ev.record_id else "chunk")
        self.tally(ev.technique.name, "passed over")

    def add_decisions(self, record: QARecord) -> None:
        for d in record.decisions:
            over = d.details.get("passed_over")
            if over == "language":  # a whole filter, or the rationale, passed it over
                self._pass_over(f"{d.filter} ({d.details.get('language') or 'und'})",
                                d.reason.removeprefix("passed over: "), "record")
                self.tally(d.filter, "passed over")
                continue
            for check in over or ():  # some checks of a filter (heuristic-quality)
                note = d.details.get("checks", {}).get(check, {}).get("note", "")
                self._pass_over(f"{d.filter} {check} ({d.details.get('language') or 'und'})",
                                note.removeprefix("passed over: "), "check")
            self.tally(d.filter, "kept" if d.kept else "rejected")
            if d.details.get("enforced") is False and d.score is not None:
                scores = self.unenforced_scores.setdefault(d.filter, {})
                scores[f"{d.score:g}"] = scores.get(f"{d.score:g}", 0) + 1

    def warn_unenforced(self) -> None:
        """A warning per filter whose scores were recorded and not enforced (a base model's
        judge), with their spread."""
        for name, scores in sorted(self.unenforced_scores.items()):
            spread = ", ".join(f"{n} scored {s}" for s, n in
                               sorted(scores.items(), key=lambda kv: float(kv[0])))
            self.warnings.append(
                f"{name}: a base model's scores were recorded, not enforced, on "
                f"{sum(scores.values())} records ({spread}); set [filters.options.{name}] "
                f"base_model_scores = \"enforce\" to enforce them")

    def add_record_rejection(self, record: QARecord) -> None:
        decision = next(d for d in record.decisions if not d.kept)
        reason = decision.filter
        if decision.score is not None and decision.threshold is not None:
            reason += f" (score < {decision.threshold:g})"
        self.record_rejections[reason] = self.record_rejections.get(reason, 0) + 1

    def add_dataset(self, built: DatasetBuilt) -> None:
        self.dataset_rows = built.train_rows + built.eval_rows
        self.dataset = {"version": built.version, "prefix": built.prefix, "format": built.format,
                        "train_rows": built.train_rows, "eval_rows": built.eval_rows,
                        "counts": dict(built.counts), "timings": dict(built.timings)}

    def add_failure(self, failure: GenerationFailed) -> None:
        key = shorten(f"{failure.stage} {failure.technique.name}: {failure.reason}", 160)
        entry = self.failures.setdefault(key, {"count": 0, "example": failure.raw_output[:500]})
        entry["count"] += 1
        self.tally(failure.technique.name, "unusable")

    def add_dataset_failure(self, failed: DatasetFailed) -> None:
        self.dataset = {"failed": failed.reason, "detail": failed.detail}
        self.warnings.append(f"no data set was built ({failed.reason}): {failed.detail}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        """``report.json``: the report as JSON, named in its own outputs."""
        self.outputs["report"] = str(path)
        path.write_text(json.dumps(self.as_dict(), indent=2, default=str))

    def render(self, console: Console) -> None:
        t = Table(title=f"Syllabus run {self.run_id} — collection {self.collection!r}",
                  show_header=True, header_style="bold")
        t.add_column("stage")
        t.add_column("count", justify="right")
        t.add_column("details")
        t.add_row("files", str(self.files), "")
        t.add_row("documents submitted", str(self.submitted),
                  f"{self.already_submitted} already submitted earlier (skipped)"
                  if self.already_submitted else "")
        if self.specs_submitted:
            t.add_row("api specs submitted", str(self.specs_submitted),
                      "to the api-annotator")
        t.add_row("documents ingested", str(self.ingested),
                  f"{self.pages} pages"
                  + (f" ({self.ocr_pages} by OCR)" if self.ocr_pages else "")
                  + f", {self.bytes / 1e6:.2f} MB"
                  + ("; " + ", ".join(f"{k} {v}" for k, v in sorted(self.formats.items()))
                     if self.formats else ""))
        t.add_row("documents rejected", str(self.rejected),
                  ", ".join(f"{k}: {len(v)}" for k, v in sorted(self.rejections.items())))
        dropped = Counter(self.chunks_dropped)
        t.add_row("chunks created", str(self.chunks_created),
                  f"{self.chunks_in_collection} in the collection in all"
                  + ("; " + ", ".join(f"{k} {v}" for k, v in self.languages.items())
                     if self.languages else ""))
        t.add_row("chunks dropped", str(sum(dropped.values())),
                  ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())))
        if self.chunks_superseded:
            t.add_row("chunks superseded", str(self.chunks_superseded),
                      "announced first, then dropped for a document submitted before them")
        if self.resumed:
            t.add_row("resumed", str(sum(self.resumed.values())),
                      "documents submitted by an earlier run, finished in this one ("
                      + ", ".join(f"{r}: {n}" for r, n in sorted(self.resumed.items())) + ")")
        if self.before:
            t.add_row("already there", "", "before this run: " + ", ".join(
                f"{n} {what}" for what, n in self.before.items()))
        for stage, counts in self.stages.items():
            # the first count is the stage's total ("records", or "operations" for API
            # filtering); the rest break it down
            head = "records" if "records" in counts else next(iter(counts))
            t.add_row(f"{stage} {head}", str(counts[head]),
                      escape(", ".join(f"{k}: {v}" for k, v in counts.items() if k != head)))
        if self.record_rejections:
            t.add_row("records rejected", str(sum(self.record_rejections.values())),
                      escape(", ".join(f"{k}: {v}"
                                       for k, v in sorted(self.record_rejections.items()))))
        if self.dataset.get("failed"):
            t.add_row("data set rows", "0", f"none built ({self.dataset['failed']})")
        elif self.dataset:
            c = self.dataset["counts"]
            steps = ", ".join(f"{k}: -{v}" for k, v in c.items()
                              if k not in {"accepted", "selected", "synthetic_available",
                                           "synthetic", "train_rows", "eval_rows",
                                           "train_records", "eval_records"} and v)
            t.add_row("data set selection", str(c.get("selected", 0)),
                      f"of {c.get('accepted', 0)} accepted" + (f"; {steps}" if steps else "")
                      + f"; + {c.get('synthetic', 0)} anti-sycophancy")
            t.add_row("data set rows", str(self.dataset_rows),
                      f"train {self.dataset['train_rows']}, eval {self.dataset['eval_rows']}; "
                      f"version {self.dataset['version']}, format {self.dataset['format']}"
                      + (f" ({escape(self.format_reason)})" if self.format_reason else ""))
        if self.passed_over:
            # chunks and records; a filter's checks passed over on a kept record are listed,
            # not added to the total (three checks on one record are one record)
            t.add_row("passed over", str(sum(e["count"] for e in self.passed_over.values()
                                             if e["unit"] != "check")),
                      escape(", ".join(f"{k}: {e['count']}"
                                       for k, e in sorted(self.passed_over.items()))))
        t.add_row("dead letters", str(len(self.dead_letters)),
                  escape("; ".join(shorten(d["reason"], 100) for d in self.dead_letters[:3])))
        console.print(t)
        if self.rejections:
            r = Table(title="rejections by reason", header_style="bold")
            r.add_column("reason")
            r.add_column("file and detail")
            for reason, items in sorted(self.rejections.items()):
                for item in items:
                    r.add_row(reason, escape(item))  # file names are not markup
            console.print(r)
        if self.failures:
            f = Table(title="unusable teacher output, by reason", header_style="bold")
            f.add_column("stage, technique: reason")
            f.add_column("count", justify="right")
            f.add_column("an example of the raw output")
            for reason, entry in sorted(self.failures.items(), key=lambda kv: -kv[1]["count"]):
                f.add_row(escape(reason), str(entry["count"]),
                          escape(shorten(entry["example"], 200) or "(empty)"))
            console.print(f)
        if self.passed_over:
            p = Table(title="passed over: not given to a technique for its language",
                      header_style="bold")
            p.add_column("stage or filter, technique or check (language)")
            p.add_column("count", justify="right")
            p.add_column("why")
            for key, entry in sorted(self.passed_over.items()):
                p.add_row(escape(key), str(entry["count"]), escape(entry["detail"]))
            console.print(p)
        if self.techniques:
            k = Table(title="by technique and filter", header_style="bold")
            for col in ("technique or filter", "records made", "kept", "rejected",
                        "passed over", "unusable outputs"):
                k.add_column(col, justify="left" if col.startswith("tech") else "right")
            for name, c in sorted(self.techniques.items()):
                k.add_row(escape(name), *(str(c.get(w, 0)) for w in
                                          ("made", "kept", "rejected", "passed over",
                                           "unusable")))
            console.print(k)
        tasks = self.teacher_stats.get("tasks") if self.teacher_stats else None
        if tasks:
            q = Table(title="teacher requests by task", header_style="bold")
            for col in ("task", "requests", "retries after unusable output", "call retries",
                        "failed calls", "completion tokens"):
                q.add_column(col, justify="left" if col == "task" else "right")
            for name, c in sorted(tasks.items()):
                q.add_row(escape(name), *(str(c.get(w, 0)) for w in (
                    "requests", "parse_retries", "retries", "failures", "completion_tokens")))
            console.print(q)
        if self.documents_without_chunks:
            d = Table(title="documents without new chunks", header_style="bold")
            d.add_column("file and reason")
            for item in self.documents_without_chunks:
                d.add_row(escape(item))
            console.print(d)
        for w in self.warnings:
            console.print(f"[yellow]warning[/yellow] {escape(w)}")
        tm = self.timings
        ts = self.teacher_stats
        teacher_line = f"teacher: {self.teacher}"
        if ts:
            teacher_line += (f"; {ts['calls']} calls answered, {ts['failures']} failed, "
                             f"{ts['cache_hits']} cache hits, {ts['retries']} retries, "
                             f"{ts['prompt_tokens']} prompt + {ts['completion_tokens']} "
                             f"completion tokens, busy {ts.get('busy_seconds', 0):.2f}s of "
                             f"the run ({ts['seconds']:.2f}s summed over concurrent calls)")
        engine = (ts or {}).get("engine")
        if engine:
            alone = engine["alone"]
            teacher_line += (f"\nlocal engine: {engine['run_tokens_per_s']:.0f} tokens/s over "
                             f"the busy time of the run's calls; the engine alone (in-process, "
                             f"no server) {alone['tokens_per_s']:.0f} tokens/s on a sample of "
                             f"{alone['requests']} of the same prompts"
                             + (f" ({engine['vs_engine_alone']:.0%})"
                                if engine.get("vs_engine_alone") else ""))
        console.print(
            f"{teacher_line}\n"
            f"timings: total {tm.get('total_seconds', 0):.2f}s, "
            f"submit {tm.get('submit_seconds', 0):.2f}s, "
            f"parse {tm.get('parse_seconds', 0):.2f}s, chunk {tm.get('chunk_seconds', 0):.2f}s, "
            f"wait for the pipeline {tm.get('drain_seconds', 0):.2f}s")
        if self.services:
            console.print("time in handlers (messages; seconds summed over messages handled "
                          "at once): " + ", ".join(
                              f"{name} {v['messages']}; {v['handler_seconds']:.2f}s"
                              for name, v in self.services.items()))
        if self.dataset.get("timings"):
            console.print("data set build time: " + ", ".join(
                f"{k} {v:.2f}s" for k, v in self.dataset["timings"].items()))
        if self.training:
            from ._run_train import render_training
            render_training(console, self.training)
        if self.serving:
            from ._run_serve import render_serving
            render_serving(console, self.serving)
        if self.bootstrap:
            from ._bootstrap import render_bootstrap
            render_bootstrap(console, self.bootstrap)
        for name, path in self.outputs.items():
            console.print(f"{name}: {path}")
