"""``syllabus run --serve``: the run's trained model behind Triton and the OpenAI API.

The server's router is mounted with the others, so the run's ``training.completed`` is
deployed by the server service itself (repository, load into the embedded Triton,
evaluation gate, ``models.deployed``) while the run waits for the pipeline to drain.
``serve_step`` then reads the verdict, starts the OpenAI-compatible API on a free
127.0.0.1 port, asks the model a held-out question from the data set through
``POST /v1/chat/completions``, puts the verdict, the evaluation scores, the question and
the answer in the report, and stops the API and Triton.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from syllabus.contracts import (
    MODELS_DEPLOYED,
    TRAINING_COMPLETED,
    ModelDeployed,
    TrainingCompleted,
)

from ..runtime import Runtime, Settings, build_http_app, free_port, replay

__all__ = ["FALLBACK_QUESTION", "prepare_settings", "render_serving", "serve_step"]

FALLBACK_QUESTION = "What is this collection about?"


def prepare_settings(settings: Settings, out: Path) -> None:
    """The server's working files (the embedded Triton, its repository) under ``out``."""
    if settings.server.work_dir == Path(".syllabus/server"):
        settings.server.work_dir = out / "server"


async def _question(rt: Runtime, dataset: str) -> str:
    from ..evals import parse_eval_rows

    for name in ("eval.jsonl", "train.jsonl"):
        key = f"datasets/{dataset.strip('/')}/{name}"
        if await rt.to_thread(rt.store.exists, key):
            try:
                items = parse_eval_rows(await rt.to_thread(rt.store.get, key), source=key)
            except ValueError:
                continue
            if items:
                return items[0].messages[-1].content
    return FALLBACK_QUESTION


async def _ask(rt: Runtime, model: str, question: str) -> dict[str, Any]:
    """Start the API on a free port, ask ``question`` through it, stop the API."""
    import httpx
    import uvicorn

    from ..server import http_routes

    token = rt.settings.http.token.get_secret_value() if rt.settings.http.token else None
    app = build_http_app(service="server", ready=rt.ready, routes=http_routes(rt), token=token)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        endpoint = f"http://127.0.0.1:{port}/v1"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(timeout=rt.settings.server.request_timeout) as client:
            resp = await client.post(f"{endpoint}/chat/completions", headers=headers, json={
                "model": model, "messages": [{"role": "user", "content": question}],
                "max_tokens": 64, "temperature": 0})
        body = resp.json()
        if resp.status_code != 200:
            return {"endpoint": endpoint, "question": question,
                    "error": f"{resp.status_code}: {body.get('error', {}).get('message')}"}
        return {"endpoint": endpoint, "question": question,
                "answer": body["choices"][0]["message"]["content"],
                "usage": body.get("usage", {})}
    finally:
        server.should_exit = True
        await task


async def _verdict(rt: Runtime, model_id: str, timeout: float) -> ModelDeployed | None:
    """The server's ModelDeployed for ``model_id``, waiting for it while the server loads
    and evaluates the model."""
    deadline = time.monotonic() + timeout
    while True:
        verdicts = [ModelDeployed.model_validate_json(m.data)
                    for m in await replay(rt.bus, MODELS_DEPLOYED)]
        found = next((v for v in reversed(verdicts) if v.model_id == model_id), None)
        if found is not None or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def serve_step(rt: Runtime, report: Any, *, dataset: str | None,
                     timeout: float | None = None) -> None:
    """Fill ``report.serving`` from the server's verdict on the run's model, and ask the
    model a question through the OpenAI API (see the module docstring)."""
    from ..server import shutdown

    try:
        trained = [TrainingCompleted.model_validate_json(m.data)
                   for m in await replay(rt.bus, TRAINING_COMPLETED)]
        if dataset:
            trained = [t for t in trained if t.dataset == dataset] or trained
        if not trained:
            report.warnings.append("--serve: no model was trained in this run, so there is "
                                   "nothing to serve")
            return
        model = trained[-1]
        wait = timeout if timeout is not None else rt.settings.server.load_timeout + 600
        verdict = await _verdict(rt, model.model_id, wait)
        if verdict is None:
            report.warnings.append(f"--serve: the server gave no verdict on {model.model_id} "
                                   f"in {wait:g}s (see the dead letters)")
            return
        report.serving = {
            "model": verdict.name, "model_id": verdict.model_id, "status": verdict.status,
            "reason": verdict.reason, "backend": verdict.backend,
            "eval_scores": verdict.eval_scores, "eval_floors": verdict.eval_floors,
            "eval_details": {k: {kk: vv for kk, vv in v.items() if not isinstance(vv, list)}
                             for k, v in verdict.eval_details.items()},
        }
        if verdict.status == "deployed":
            report.serving.update(await _ask(rt, verdict.name,
                                             await _question(rt, model.dataset)))
        else:
            report.warnings.append(f"--serve: the model was {verdict.status}: {verdict.reason}")
    finally:
        await shutdown(rt)


def render_serving(console: Console, serving: dict[str, Any]) -> None:
    """The serving part of the run report."""
    if not serving:
        return
    t = Table(title=f"serving: {serving['model']} ({serving['status']})", header_style="bold")
    t.add_column("", no_wrap=True)
    t.add_column("", overflow="fold")
    base = serving.get("eval_details", {}).get("base", {})
    for score, value in sorted(serving.get("eval_scores", {}).items()):
        floor = serving.get("eval_floors", {}).get(score)
        against = [f"floor {floor:g}"] if floor is not None else []
        if score in base.get("scores", {}):
            against.append(f"base model {base['scores'][score]:.3f}")
        t.add_row(score, f"{value:.3f}" + (f" ({'; '.join(against)})" if against else ""))
    for suite, details in sorted(serving.get("eval_details", {}).items()):
        if "skipped" in details or "error" in details:
            t.add_row("base model" if suite == "base" else f"{suite} suite",
                      str(details.get("skipped") or details.get("error")))
    if serving.get("reason"):
        t.add_row("reason", serving["reason"])
    if serving.get("endpoint"):
        t.add_row("asked", f"POST {serving['endpoint']}/chat/completions")
        t.add_row("question", serving.get("question", ""))
        answer = serving.get("answer")
        # quoted: a barely trained model may answer with whitespace only
        t.add_row("answer", json.dumps(answer)[:500] if answer is not None
                  else serving.get("error", ""))
    console.print(t)
