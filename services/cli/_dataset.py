"""``syllabus dataset ...``: versioned data sets from a collection's accepted records."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from syllabus.contracts import check_collection

from ._common import cli_settings, key_value_pairs

__all__ = ["dataset_group"]

FORMATS = ["openai", "alpaca", "sharegpt", "step-by-step"]


def _collection(_ctx, _param, value: str | None) -> str | None:
    if value is not None:
        try:
            check_collection(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _threshold(_ctx, _param, value: str | None) -> float | str | None:
    """A similarity in (0, 1], or "off"."""
    if value is None or value == "off":
        return value
    try:
        v = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: a number in (0, 1], or 'off'") from None
    if not 0.0 < v <= 1.0:
        raise click.BadParameter(f"{value!r}: a number in (0, 1], or 'off'")
    return v


class _Progress:
    """Progress of the long steps on stderr, at most a line a second per step."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last: dict[str, float] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (done < total and now - self.last.get(step, 0.0) < 1.0):
            return
        self.last[step] = now
        click.echo(f"{step}: {done}/{total}", err=True)


@click.group("dataset")
def dataset_group() -> None:
    """Build versioned data sets from a collection's accepted records."""


@dataset_group.command("build")
@click.option("--collection", "-c", default=None, callback=_collection,
              help="Collection (default: the 'collection' setting).")
@click.option("--target-size", "-n", type=click.IntRange(min=1), default=None,
              help="Select this many records: a LIMA-style diverse, high-quality subset "
                   "(greedy facility location on sentence embeddings, weighted by quality).")
@click.option("--format", "fmt", type=click.Choice([*FORMATS, "openai-chat"]), default="openai",
              show_default=True, help="Data set format ('openai-chat' is another name for "
                                      "'openai': OpenAI chat JSONL).")
@click.option("--eval-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1,
              show_default=True, help="Share of the records in eval.jsonl (by a hash of the "
                                      "record id, so adding records moves no other).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the train/eval split and of the synthetic share.")
@click.option("--near-duplicate-threshold", callback=_threshold, default=None,
              help="MinHash near-duplicate Jaccard threshold, or 'off' (default 0.8).")
@click.option("--semantic-threshold", callback=_threshold, default=None,
              help="Embedding cosine threshold of semantic duplicates, or 'off' (default 0.95).")
@click.option("--decontaminate", "decontaminate", default=None, metavar="PATH",
              help="Evaluation set (JSONL or text; a local file or a store key): records "
                   "sharing a word 13-gram with it are removed.")
@click.option("--synthetic-ratio", default=None,
              help="Instruction records per anti-sycophancy record, e.g. 5 or 5:1 (default 5).")
@click.option("--source-temperature", type=click.FloatRange(min=0.0, min_open=True),
              default=None, help="Share the --target-size subset among the source documents "
                                 "in proportion to n ** (1/T): 1 proportional, larger "
                                 "flatter, 'inf' evenly.")
@click.option("--lima", is_flag=True,
              help="LIMA's subset (Zhou et al. 2023): --target-size 1000 and "
                   "--source-temperature inf, unless given.")
@click.option("--option", "-o", "extra", multiple=True, callback=key_value_pairs,
              metavar="KEY=VALUE", help="Another selection option (shingle_words, neighbors, "
                                        "ngram, quality_scores, ...); VALUE as JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build_command(collection: str | None, target_size: int | None, fmt: str,
                  eval_fraction: float, seed: int, near_duplicate_threshold: Any,
                  semantic_threshold: Any, decontaminate: str | None,
                  synthetic_ratio: str | None, source_temperature: float | None,
                  lima: bool, extra: dict[str, Any], as_json: bool) -> None:
    """Build a data set version of a collection, against the configured NATS and store.

    Reads the collection's accepted records from the stream, selects (exact, near-duplicate
    and semantic de-duplication, decontamination, the diverse subset), and writes
    datasets/<collection>/<version>/{train,eval}.jsonl and manifest.json to the store. The
    same records and settings give the same version, which is not written twice.
    """
    from syllabus.contracts import DatasetRequested

    from ..datasets import build
    from ..datasets._service import augment
    from ..runtime import Runtime

    settings = cli_settings()
    options: dict[str, Any] = dict(extra)
    for key, value in (("near_duplicate_threshold", near_duplicate_threshold),
                       ("semantic_threshold", semantic_threshold)):
        if value is not None:
            options[key] = None if value == "off" else value
    if synthetic_ratio is not None:
        options["synthetic_ratio"] = synthetic_ratio
    if source_temperature is not None:
        options["source_temperature"] = source_temperature
    if lima:
        options["lima"] = True
    if decontaminate:
        options["decontaminate"] = decontaminate
    try:
        request = DatasetRequested(collection=collection or settings.collection,
                                   target_size=target_size,
                                   format="openai" if fmt == "openai-chat" else fmt,
                                   eval_fraction=eval_fraction, seed=seed, options=options)
    except Exception as exc:
        raise click.ClickException(str(exc)) from exc

    async def go():
        rt = Runtime.create(settings, client_name="syllabus-cli")
        await rt.bus.start()
        try:
            # the same augmenters the dataset-builder service runs on a bus request
            augmenters = [rt.plugins.get("register_augmenters", name)
                          for name in settings.datasets.augmenters]
            if augmenters:
                await augment(rt, request, augmenters)
            return await build(rt, request, allow_local_files=True,
                               progress=_Progress(not as_json or sys.stderr.isatty()))
        finally:
            await rt.close()

    t0 = time.perf_counter()
    try:
        result = asyncio.run(go())
    except (OSError, TimeoutError, ValueError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - t0
    ev, manifest = result.event, result.manifest
    summary = {
        "collection": ev.collection, "version": ev.version, "prefix": ev.prefix,
        "format": ev.format, "written": result.written, "train_rows": ev.train_rows,
        "eval_rows": ev.eval_rows, "counts": ev.counts,
        "steps": [{"step": s.step, "in": s.records_in, "removed": len(s.removed),
                   "out": s.records_out, "skipped": s.skipped,
                   "seconds": round(s.seconds, 3)} for s in result.selection.steps],
        "synthetic": {k: v for k, v in manifest.get("synthetic", {}).items() if k != "steps"},
        "timings": ev.timings,
        "seconds": round(seconds, 3),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    console = Console()
    table = Table(title=f"data set {ev.collection}/{ev.version} ({ev.format})",
                  header_style="bold")
    table.add_column("step", no_wrap=True)
    for col in ("in", "removed", "out"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("note")
    for s in summary["steps"]:
        table.add_row(s["step"], str(s["in"]), str(s["removed"]), str(s["out"]),
                      s["skipped"] and f"skipped: {s['skipped']}" or f"{s['seconds']:.1f}s")
    syn = summary["synthetic"]
    if syn.get("available"):
        table.add_row("synthetic share", str(syn["available"]), "", str(syn["added"]),
                      f"ratio {syn['ratio']}")
    console.print(table)
    state = "written to" if result.written else "already in"
    console.print(f"{ev.train_rows} train and {ev.eval_rows} eval rows "
                  f"({ev.counts.get('train_records', 0)} + {ev.counts.get('eval_records', 0)} "
                  f"records), {state} the store at {ev.prefix} ({seconds:.1f}s)", markup=False)
    if ev.timings:
        console.print("build time: " + ", ".join(f"{k} {v:.2f}s" for k, v in ev.timings.items()),
                      markup=False)
