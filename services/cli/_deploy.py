"""``syllabus deploy MODEL_ID`` and ``syllabus models``: the server's deployments by hand."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import click
from rich.console import Console
from rich.table import Table

from ._common import cli_settings

__all__ = ["deploy_command", "models_command"]




def _records(store) -> list[dict]:
    from ..server import RECORD_FILE

    out = []
    for key in store.list("triton/"):
        if key.count("/") == 2 and key.endswith("/" + RECORD_FILE):
            out.append(json.loads(store.get(key)))
    return sorted(out, key=lambda r: r["event"]["name"])


@click.command("deploy")
@click.argument("model_id")
@click.option("--dataset", default=None,
              help="The data set version COLLECTION/VERSION it was trained on (its eval.jsonl "
                   "feeds the QA gate); default: from the model's training.completed event.")
@click.option("--store-prefix", default=None,
              help="Where the model is in the store (default: models/MODEL_ID/).")
@click.option("--force", is_flag=True,
              help="Deploy again, even if the model was deployed, refused or failed before.")
@click.option("--direct", is_flag=True,
              help="Deploy from this process into the Triton at server.triton_url, without a "
                   "running server service.")
@click.option("--timeout", type=float, default=900.0, show_default=True,
              help="Seconds to wait for the verdict.")
@click.option("--json", "as_json", is_flag=True, help="Print the ModelDeployed event as JSON.")
def deploy_command(model_id: str, dataset: str | None, store_prefix: str | None, force: bool,
                   direct: bool, timeout: float, as_json: bool) -> None:
    """Deploy a trained model: Triton repository, load, evaluation gate, announcement.

    By default this asks the running server service (syllabus serve server) over the bus:
    it publishes a training.completed for MODEL_ID and waits for the server's
    models.deployed verdict. With --direct it does the deployment itself, against the
    external Triton named by server.triton_url.
    """
    from syllabus.contracts import (
        MODELS_DEPLOYED,
        TRAINING_COMPLETED,
        ModelDeployed,
        TrainingCompleted,
    )

    from ..runtime import Runtime, replay
    from ..server import HEADER_REDEPLOY, record_key, server_state, triton_name

    try:
        triton_name(model_id)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    settings = cli_settings()
    if direct and not settings.server.triton_url:
        raise click.ClickException("--direct needs an external Triton (server.triton_url); "
                                   "an embedded one would stop when this command exits")

    async def go() -> ModelDeployed:
        rt = Runtime.create(settings, client_name="syllabus-deploy")
        await rt.bus.start()
        try:
            name = triton_name(model_id)
            if not force and await rt.to_thread(rt.store.exists, record_key(name)):
                rec = json.loads(await rt.to_thread(rt.store.get, record_key(name)))
                click.echo(f"{model_id} was handled before ({rec['event']['status']}); "
                           "use --force to deploy it again", err=True)
                return ModelDeployed.model_validate(rec["event"])
            known = [TrainingCompleted.model_validate_json(m.data)
                     for m in await replay(rt.bus, TRAINING_COMPLETED)]
            original = next((e for e in reversed(known) if e.model_id == model_id), None)
            prefix = store_prefix or (original.store_prefix if original
                                      else f"models/{model_id}/")
            ds = dataset or (original.dataset if original else "")
            event = TrainingCompleted(job_id=f"deploy-{model_id}-{uuid.uuid4().hex[:8]}",
                                      model_id=model_id, store_prefix=prefix, dataset=ds,
                                      metrics=original.metrics if original else {})
            if direct:
                state = server_state(rt)
                try:
                    return await state.deploy(event, force=force)
                finally:
                    await state.close()
            before = len(await replay(rt.bus, MODELS_DEPLOYED))
            await rt.bus.publish(event, headers={HEADER_REDEPLOY: "1"} if force else None)
            click.echo(f"published training.completed for {model_id}; waiting for the "
                       "server's verdict...", err=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msgs = await replay(rt.bus, MODELS_DEPLOYED)
                for m in msgs[before:]:
                    ev = ModelDeployed.model_validate_json(m.data)
                    if ev.model_id == model_id:
                        return ev
                await asyncio.sleep(1.0)
            raise click.ClickException(f"no models.deployed for {model_id} after {timeout:g}s "
                                       "(is `syllabus serve server` running?)")
        finally:
            await rt.close()

    try:
        ev = asyncio.run(go())
    except (OSError, TimeoutError, ValueError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    if as_json:
        click.echo(ev.model_dump_json(indent=2))
    else:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in sorted(ev.eval_scores.items()))
        click.echo(f"{ev.status}: {ev.name} ({ev.model_id}) at {ev.endpoint}"
                   + (f"; scores: {scores}" if scores else "")
                   + (f"; reason: {ev.reason}" if ev.reason else ""))
    if ev.status != "deployed":
        raise SystemExit(1)


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_command(as_json: bool) -> None:
    """List the models the server has handled: deployed, refused or failed, with their
    evaluation scores (from the deployment records in the store)."""
    from ..runtime import open_store

    settings = cli_settings()
    try:
        records = _records(open_store(settings.store))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    if as_json:
        click.echo(json.dumps([r["event"] | {"store_prefix": r.get("store_prefix")}
                               for r in records], indent=2))
        return
    if not records:
        click.echo("no models deployed yet")
        return
    table = Table(header_style="bold")
    for col in ("model", "status", "model id", "data set", "scores", "reason"):
        table.add_column(col, overflow="fold")
    for r in records:
        ev = r["event"]
        scores = "\n".join(f"{k} {v:.3f}" for k, v in sorted(ev.get("eval_scores", {}).items()))
        style = {"deployed": "green", "refused": "yellow"}.get(ev["status"], "red")
        table.add_row(ev["name"], f"[{style}]{ev['status']}[/{style}]", ev["model_id"],
                      ev.get("dataset") or "", scores, ev.get("reason") or "")
    Console().print(table)
