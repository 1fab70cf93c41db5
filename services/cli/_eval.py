"""``syllabus eval ...``: evaluations of a model behind a teacher."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ._common import cli_settings

__all__ = ["eval_group", "eval_options", "eval_teacher", "run_eval", "teacher_options"]

_F = Callable[..., Any]


def teacher_options(f: _F) -> _F:
    """``--teacher-kind``, ``--url`` and ``--model`` (parameters ``kind``, ``url``, ``model``)."""
    f = click.option("--model", default=None,
                     help="Model name (default: the teacher.model setting); KIND:MODEL also sets "
                          "the kind, when KIND is an installed teacher kind (openai:my-model).")(f)
    f = click.option("--url", default=None,
                     help="Teacher URL (default: the teacher.url setting).")(f)
    return click.option("--teacher-kind", "kind", default=None,
                        help="Teacher kind (default: the teacher.kind setting).")(f)


def eval_options(f: _F) -> _F:
    """``--concurrency``, ``--no-cache`` and ``--json`` (``concurrency``, ``no_cache``,
    ``as_json``)."""
    f = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)
    f = click.option("--no-cache", is_flag=True,
                     help="Do not read or write the teacher response cache in the store.")(f)
    return click.option("--concurrency", type=click.IntRange(min=1), default=None,
                        help="Calls in flight (default: the teacher.concurrency setting).")(f)


def eval_teacher(kind: str | None, url: str | None, model: str | None,
                 no_cache: bool) -> tuple[Any, Any, Any]:
    """Settings, plugin manager and teacher settings of an eval command: the teacher.*
    settings with the command's options over them (``KIND:MODEL`` in ``model`` sets the kind
    too, when KIND is an installed teacher kind). A usage error for bad settings or the
    extractive teacher (not a language model)."""
    from ..runtime import PluginManager

    logging.getLogger("syllabus.plugins").setLevel(logging.CRITICAL)
    settings = cli_settings()
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
    return settings, pm, ts


def run_eval(settings: Any, pm: Any, ts: Any,
             evaluate: Callable[[Any], Awaitable[dict]]) -> dict:
    """Make the teacher (with the store's response cache unless ``ts.cache`` is off), run
    ``evaluate(teacher)`` and close the teacher; a teacher that cannot be made, or fails, is
    a usage error (no traceback)."""
    from ..runtime import make_teacher, open_store

    try:
        teacher = make_teacher(ts, pm, open_store(settings.store) if ts.cache else None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc

    async def go() -> dict:
        try:
            return await evaluate(teacher)
        finally:
            await teacher.aclose()

    try:
        return asyncio.run(go())
    except Exception as exc:  # the teacher is down or misconfigured: say so, no traceback
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@click.group("eval")
def eval_group() -> None:
    """Evaluate a model (any teacher kind: openai, triton, transformers)."""


@eval_group.command("sycophancy")
@teacher_options
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Ask only the first N of the 2,500 statements.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the wrong sums.")
@eval_options
def sycophancy(kind: str | None, url: str | None, model: str | None, limit: int | None,
               seed: int, concurrency: int | None, no_cache: bool, as_json: bool) -> None:
    """Sycophancy on simple addition statements (Wei et al. 2023).

    Asks the model about 2,500 wrong claims "x + y = s", once plainly and once after a user
    who says they agree, and prints how often it disagrees (the correct answer) each way.
    A model that is not sycophantic disagrees as often with the opinion as without it.
    """
    from ..evals import run_sycophancy_eval

    settings, pm, ts = eval_teacher(kind, url, model, no_cache)
    result = run_eval(settings, pm, ts, lambda teacher: run_sycophancy_eval(
        teacher, limit=limit, seed=seed, concurrency=concurrency or ts.concurrency))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"sycophancy on addition statements: {result['teacher']['kind']}:"
                        f"{result['teacher']['model']}, {result['items']} items",
                  header_style="bold")
    table.add_column("prompt", no_wrap=True)
    for col in ("disagree rate", "disagree", "agree", "unparsed", "errors"):
        table.add_column(col, justify="right", no_wrap=True)
    for key, label in (("without_opinion", "without opinion"),
                       ("with_opinion", "with user's opinion")):
        row = result[key]
        table.add_row(label, f"{row['disagree_rate']:.1%}", str(row["disagree"]),
                      str(row["agree"]), str(row["unparsed"]), str(row["errors"]))
    console = Console()
    console.print(table)
    console.print("Every claim is false: disagreeing is correct. A model that is not "
                  "sycophantic disagrees as often with the user's opinion as without it.")
    unparsed = result["without_opinion"]["unparsed_examples"] or \
        result["with_opinion"]["unparsed_examples"]
    if unparsed:
        console.print(f"unparsed answer, e.g.: {unparsed[0]!r}", markup=False)


def _register_qa() -> None:
    from ._eval_qa import qa_command

    eval_group.add_command(qa_command)


_register_qa()
