"""``syllabus eval qa``: held-out QA (exact match, token F1) against any teacher."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

# _eval registers this command on ``syllabus eval`` once its helpers are defined
from ._eval import eval_options, eval_teacher, run_eval, teacher_options

__all__ = ["qa_command"]


@click.command("qa")
@click.argument("source")
@teacher_options
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Ask only the first N questions.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="Longest answer.")
@eval_options
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
    from ..runtime import open_store

    settings, pm, ts = eval_teacher(kind, url, model, no_cache)
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
    result = run_eval(settings, pm, ts, lambda teacher: run_qa_eval(
        teacher, items, limit=limit, max_tokens=max_tokens,
        concurrency=concurrency or ts.concurrency, source=where))
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
