"""The server service: ``TrainingCompleted`` in, a served model and ``ModelDeployed`` out,
plus the OpenAI-compatible HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from faststream.nats import NatsRouter
from starlette.routing import BaseRoute

from syllabus.contracts import TRAINING_COMPLETED, TrainingCompleted

from ..runtime import HandlerContext, Runtime
from ._api import api_routes
from ._deploy import server_state

__all__ = ["HEADER_REDEPLOY", "SERVICE", "build_router", "http_routes", "ready", "shutdown",
           "startup"]

SERVICE = "server"
#: a training.completed carrying this header (``syllabus deploy --force``) is deployed
#: again even when the model was handled before
HEADER_REDEPLOY = "Syllabus-Redeploy"
log = logging.getLogger("syllabus.server")


def build_router(rt: Runtime) -> NatsRouter:
    router = NatsRouter()
    cfg = rt.settings.server
    # misconfiguration fails here, when the service starts, not on the first model
    unknown = [s for s in cfg.eval_suites if s not in ("qa", "sycophancy")]
    if unknown:
        raise ValueError(f"server.eval_suites: unknown suite(s) {', '.join(unknown)} "
                         "(known: qa, sycophancy)")
    if cfg.backend == "vllm" and not (cfg.vllm_model_path or cfg.model_repository
                                      or not cfg.triton_url):
        raise ValueError("server.backend = 'vllm' with a Triton that reads the store needs "
                         "server.vllm_model_path (where that Triton sees the weights)")

    # one deployment at a time: loading and evaluating a model is heavy
    @rt.bus.consumer(router, service=SERVICE, subject=TRAINING_COMPLETED,
                     model=TrainingCompleted, concurrency=1)
    async def training_completed(event: TrainingCompleted, ctx: HandlerContext) -> None:
        """Write the model's Triton repository, load it, evaluate it, announce it."""
        await server_state(rt).deploy(event, force=ctx.headers.get(HEADER_REDEPLOY) == "1")

    return router


def http_routes(rt: Runtime) -> list[BaseRoute]:
    return list(api_routes(rt))


async def startup(rt: Runtime) -> None:
    """Start (or connect to) Triton, reload the models deployed before, and watch the
    embedded tritonserver (restarted when it exits)."""
    state = server_state(rt)
    await state.start()
    rt.state["server.watch"] = asyncio.create_task(state.watch())


async def ready(rt: Runtime) -> dict[str, bool]:
    """The server's part of ``/health/ready``: Triton is live."""
    return await server_state(rt).ready_checks()


async def shutdown(rt: Runtime) -> None:
    """Stop the embedded Triton (an external one keeps its models)."""
    watch = rt.state.pop("server.watch", None)
    if watch is not None:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    state = rt.state.get("server")
    if state is not None:
        await state.close()
