"""``syllabus eval qa``: held-out QA (exact match, token F1) against any teacher."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

__all__ = ["qa_command"]


@click.command("qa")
@click.argument("source")
@click.option("--teacher-kind", "kind", default=None,
              help="Teacher kind (default: the teacher.kind setting).")
@click.option("--url", default=None, help="Teacher URL (default: the teacher.url setting).")
@click.option("--model", default=None,
              help="Model name (default: the teacher.model setting); KIND:MODEL also sets the "
                   "kind (openai:my-model).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Ask only the first N questions.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="Longest answer.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Calls in flight (default: the teacher.concurrency setting).")
@click.option("--no-cache", is_flag=True,
              help="Do not read or write the teacher response cache in the store.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def qa_command(source: str, kind: str | None, url: str | None, model: str | None,
               limit: int | None, max_tokens: int, concurrency: int | None, no_cache: bool,
               as_json: bool) -> None:
    """Held-out question answering: exact match and token F1 (SQuAD's).

    SOURCE is an eval.jsonl the dataset builder wrote (openai, alpaca, sharegpt or
    step-by-step rows): a local file, a store key, or a data set version COLLECTION/VERSION
    (datasets/COLLECTION/VERSION/eval.jsonl in the store). Each question is asked at
    temperature 0 and the answer compared with the reference.
    """
    from ..evals import parse_eval_rows, run_qa_eval
    from ..runtime import PluginManager, load_settings, make_teacher, open_store

    logging.getLogger("syllabus.plugins").setLevel(logging.CRITICAL)
    try:
        settings = load_settings()
    except Exception as exc:  # a bad recipe or environment variable: say which
        raise click.ClickException(f"invalid settings: {exc}") from exc
    pm = PluginManager(allow=settings.plugin_allow_list())
    kinds = {r.obj.kind for r in pm.objects("register_teachers")}
    if model and kind is None and ":" in model and model.split(":", 1)[0] in kinds:
        kind, model = model.split(":", 1)
    update = {k: v for k, v in {"kind": kind, "url": url, "model": model}.items()
              if v is not None}
    if no_cache:
        update["cache"] = False
    ts = settings.teacher.model_copy(update=update)
    if ts.kind == "extractive":
        raise click.ClickException(
            "the extractive teacher is not a language model, so there is nothing to evaluate; "
            "choose a model with --teacher-kind/--url/--model or SYLLABUS_TEACHER__...")

    path = Path(source).expanduser()
    try:
        if path.is_file():
            data, where = path.read_bytes(), str(path)
        else:
            store = open_store(settings.store)
            key = source if source.endswith(".jsonl") else \
                f"datasets/{source.strip('/')}/eval.jsonl"
            if not store.exists(key):
                raise click.ClickException(f"{source!r} is neither a file nor in the store "
                                           f"(looked for {key})")
            data, where = store.get(key), f"store:{key}"
        items = parse_eval_rows(data, source=where)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if not items:
        raise click.ClickException(f"{where} has no questions")
    try:
        teacher = make_teacher(ts, pm, open_store(settings.store) if ts.cache else None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc

    async def go() -> dict:
        try:
            return await run_qa_eval(teacher, items, limit=limit, max_tokens=max_tokens,
                                     concurrency=concurrency or ts.concurrency, source=where)
        finally:
            await teacher.aclose()

    try:
        result = asyncio.run(go())
    except Exception as exc:  # the teacher is down or misconfigured: say so, no traceback
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"held-out QA: {result['teacher']['kind']}:{result['teacher']['model']}, "
                        f"{result['items']} questions from {where}", header_style="bold")
    for col in ("exact match", "token F1", "errors"):
        table.add_column(col, justify="right")
    table.add_row(f"{result['exact_match']:.1%}", f"{result['token_f1']:.1%}",
                  str(result["errors"]))
    console = Console()
    console.print(table)
    for ex in result["examples"]:
        console.print(f"line {ex['line']}: {ex['question'][:80]!r} -> {ex['answer'][:80]!r} "
                      f"(reference {ex['reference'][:80]!r}, F1 {ex['token_f1']:.2f})",
                      markup=False)
