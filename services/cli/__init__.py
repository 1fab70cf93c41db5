"""The ``syllabus`` command."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from syllabus.contracts import check_collection

from ._common import cli_settings

__all__ = ["main"]


def _collection(_ctx, _param, value: str | None) -> str | None:
    if value is not None:
        try:
            check_collection(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value




@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="syllabus")
def main() -> None:
    """Syllabus: turn documents into LLM fine-tuning data, as services on a message bus.

    Settings come from ./syllabus.toml (or $SYLLABUS_CONFIG) and SYLLABUS_... environment
    variables, nested with "__" (SYLLABUS_NATS__URL, SYLLABUS_STORE__KIND, ...).
    """


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--collection", "-c", default="default", show_default=True, callback=_collection,
              help="Collection (data set) the documents belong to.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=Path("syllabus-out"), show_default=True,
              help="Work folder: the NATS data, the local store, the results and the report.")
@click.option("--timeout", type=float, default=None,
              help="Give up if the pipeline has not drained after this many seconds.")
@click.option("--format", "fmt", type=click.Choice(["openai", "alpaca", "sharegpt",
                                                    "step-by-step"]),
              default=None,
              help="Data set format: OpenAI chat JSONL, Alpaca, ShareGPT, or the step-by-step "
                   "predict:/explain: multi-task pairs. Default: openai; with --train, "
                   "step-by-step when the records have rationales (the multi-task loss of "
                   "distilling step-by-step).")
@click.option("--teacher", "teacher_kind", default=None, metavar="KIND",
              help="The teacher kind (overrides teacher.kind): extractive (offline rules, "
                   "the default), local (a llama.cpp server this run starts, on Gemma 3 "
                   "270M unless --teacher-model names another GGUF), openai, triton, "
                   "transformers; or bootstrap (Humpback's M0: a seed run with the "
                   "extractive teacher, --base-model fine-tuned on it, then the run again "
                   "with that model as the local teacher).")
@click.option("--teacher-model", default=None, metavar="PATH|KEY",
              help="The teacher's model (overrides teacher.model): for --teacher local, a "
                   "GGUF file or the key gemma3-270m.")
@click.option("--train", is_flag=True,
              help="Then fine-tune a model on the data set through the trainer service and "
                   "torchrun (CPU, gloo): Gemma 3 270M (LoRA) unless --base-model names "
                   "another; the report gives its loss curve and the model's store prefix.")
@click.option("--base-model", default=None, metavar="PATH|KEY",
              help="With --train (or --teacher bootstrap, for M0): the model to fine-tune "
                   "(LoRA): a GGUF file or the key "
                   "gemma3-270m, the default (converted once, cached in the store under "
                   "base-models/), a model folder, a store prefix, or 'tiny': a tiny random "
                   "model made on the spot and fully fine-tuned (a minute; it answers "
                   "nothing useful).")
@click.option("--serve", is_flag=True,
              help="With --train: then serve the model through Triton (embedded, CPU) behind "
                   "the OpenAI-compatible API, after the evaluation gate; the report gives the "
                   "scores and a held-out question answered through /v1/chat/completions.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def run(paths: tuple[Path, ...], collection: str, out: Path, timeout: float | None,
        fmt: str | None, teacher_kind: str | None, teacher_model: str | None, train: bool,
        base_model: str | None, serve: bool, as_json: bool) -> None:
    """Run the whole pipeline on PATHS (files or folders) in one process.

    Starts an embedded NATS server and a local store under --out, then ingest ->
    question-gen -> rationale with the configured teacher (the offline 'extractive' one by
    default); OpenAPI specs among PATHS go to the api-annotator (API filtering,
    instructions, DFSDT tool-call trajectories), which calls only the hosts its settings
    allow. Waits until every service is done, writes <out>/chunks.jsonl,
    <out>/dataset/{train,eval}.jsonl (+ manifest.json) and <out>/report.json, and prints a report. Needs no
    network and no running services.
    """
    from ..runtime import configure_logging
    from ._run import run_pipeline

    if serve and not train:
        raise click.UsageError("--serve serves the model the run trains: add --train")
    from ._bootstrap import BOOTSTRAP

    bootstrap = teacher_kind == BOOTSTRAP
    if base_model and not (train or bootstrap):
        raise click.UsageError("--base-model is the model --train fine-tunes: add --train")
    if bootstrap and teacher_model:
        raise click.UsageError("--teacher bootstrap makes its own teacher (M0, fine-tuned "
                               "from --base-model): leave out --teacher-model")
    from ._run_train import DEFAULT_BASE_MODEL, TINY_BASE_MODEL

    if (train or bootstrap) and base_model is None:
        base_model = DEFAULT_BASE_MODEL
    if bootstrap and base_model == TINY_BASE_MODEL:
        # its byte-level BPE tokenizer is one llama.cpp's converter does not know
        raise click.UsageError("--teacher bootstrap serves M0 through llama.cpp, which cannot "
                               "read the tiny random model: name a real --base-model (the "
                               f"default {DEFAULT_BASE_MODEL}, a GGUF file or a model folder)")
    if base_model == TINY_BASE_MODEL:
        base_model = None  # train_after_run's tiny model
    elif base_model:  # a missing or broken GGUF file is named now, not after the pipeline
        from ._base_model import is_gguf_ref

        if is_gguf_ref(base_model):
            from syllabus.plugins.teachers.local import resolve_model
            try:
                resolve_model(base_model)
            except (ValueError, OSError) as exc:
                raise click.BadParameter(
                    f"{exc} (--base-model tiny trains a tiny random model instead)",
                    param_hint="--base-model") from None
    console = Console(stderr=True)
    configure_logging("WARNING", json_lines=False)
    settings = cli_settings()
    if teacher_kind and not bootstrap:
        settings.teacher.kind = teacher_kind
    if teacher_model:
        settings.teacher.model = teacher_model
    if bootstrap:
        from ._bootstrap import run_bootstrap as run_pipeline  # noqa: F811 - same signature
    try:
        report = asyncio.run(run_pipeline(list(paths), collection=collection, out=out,
                                          settings=settings, console=console, fmt=fmt,
                                          timeout=timeout, train=train, serve=serve,
                                          base_model=base_model))
    except (FileNotFoundError, TimeoutError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        report.render(Console())


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--collection", "-c", default=None, callback=_collection,
              help="Collection (default: the 'collection' setting).")
def ingest(paths: tuple[Path, ...], collection: str | None) -> None:
    """Upload PATHS (files or folders) to the store and publish them for ingest.

    An OpenAPI 3.0/3.1 or Swagger 2.0 spec (YAML or JSON, recognised by its content) is
    validated and published for the api-annotator instead; an invalid one is rejected
    with the JSON path of the problem.

    Uses the configured NATS (SYLLABUS_NATS__URL) and store (SYLLABUS_STORE__...)."""
    from ..ingest import iter_files, submit_path
    from ..runtime import Runtime

    settings = cli_settings()
    coll = collection or settings.collection
    try:
        check_collection(coll)
    except ValueError as exc:  # the 'collection' setting (SYLLABUS_COLLECTION, the recipe)
        raise click.ClickException(f"invalid settings: collection: {exc}") from None

    async def go() -> int:
        rt = Runtime.create(settings, client_name="syllabus-cli")
        await rt.bus.start()
        failures = 0
        try:
            for path in iter_files(paths):
                res = await submit_path(rt, path, collection=coll)
                line = f"{res.outcome:10} {res.doc_id[:12]} {path}"
                if res.outcome == "rejected":
                    failures += 1
                    line += f"  ({res.reason}: {res.detail})"
                elif res.kind == "spec":
                    line += f"  (API spec: {res.detail})"
                click.echo(line)
        finally:
            await rt.bus.close()
        return failures

    try:
        failures = asyncio.run(go())
    except (OSError, TimeoutError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    sys.exit(1 if failures else 0)


@main.command()
@click.argument("name")
@click.option("--host", default=None, help="HTTP host (default: the http.host setting).")
@click.option("--port", type=int, default=None, help="HTTP port (default: the http.port setting).")
@click.option("--exit-when-idle", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS",
              help="Exit once the service's durable consumers have had nothing waiting and "
                   "nothing unacknowledged for SECONDS (for a Job, e.g. the trainer's KEDA "
                   "ScaledJob).")
def serve(name: str, host: str | None, port: int | None,
          exit_when_idle: float | None) -> None:
    """Run one service, such as ingest, against the configured NATS and store.

    This is what a Kubernetes pod runs. It serves /metrics, /health/live, /health/ready and
    the service's own HTTP routes, which need a bearer token when http.token is set.
    """
    import uvicorn

    from ._serve import build_service_app
    from ._services import SERVICES

    if name not in SERVICES:
        raise click.BadParameter(f"unknown service {name!r}; known: {', '.join(SERVICES)}",
                                 param_hint="NAME")
    settings = cli_settings()
    from ..runtime import configure_logging
    configure_logging(settings.log_level)
    app = build_service_app(name, settings)
    if exit_when_idle is not None:
        from ._idle import serve_until_idle
        asyncio.run(serve_until_idle(app, host=host or settings.http.host,
                                     port=port or settings.http.port,
                                     idle_seconds=exit_when_idle))
        return
    uvicorn.run(app, host=host or settings.http.host, port=port or settings.http.port,
                log_config=None, access_log=False)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List the installed plugins, the hooks they implement and what they register."""
    from ..runtime import PluginManager

    logging.getLogger("syllabus.plugins").setLevel(logging.CRITICAL)
    settings = cli_settings()
    pm = PluginManager(allow=settings.plugin_allow_list())
    reg = pm.registry()
    rows = []
    for p in pm.plugins:
        objects = [f"{r.kind}:{r.name}" for hook in reg.values() for r in hook if r.plugin == p.name]
        rows.append({"name": p.name, "version": p.version, "module": p.module, "hooks": p.hooks,
                     "registers": objects, "error": p.error})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    t = Table(header_style="bold")
    for col in ("plugin", "version", "hooks", "registers", "status"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["version"], ", ".join(r["hooks"]), ", ".join(r["registers"]),
                  f"[red]{r['error']}[/red]" if r["error"] else "ok")
    Console().print(t)


def _register_subcommands() -> None:
    from ._example_api import example_api

    main.add_command(example_api)
    from ._asyncapi import asyncapi_command
    from ._dataset import dataset_group
    from ._eval import eval_group

    main.add_command(asyncapi_command)
    main.add_command(dataset_group)
    main.add_command(eval_group)
    from ._deploy import deploy_command, models_command

    main.add_command(deploy_command)
    main.add_command(models_command)
    from ._model import model_group
    from ._train import train_command

    main.add_command(train_command)
    main.add_command(model_group)


_register_subcommands()
