"""``GET /v1/training/status``: what this trainer replica is doing.

Answers ``{"current": {...} | null, "last": {...} | null}``: the running job (job and
model ids, data set, method, processes, step, total steps, last loss and evaluation loss,
tokens/s, seconds since it started) and the last job this replica finished (its outcome
and metrics, or the failure reason). The bus events say the same for every replica; this
is the per-pod view for an operator or a probe. It needs the bearer token when
``http.token`` is set, like every route but the health probes.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..runtime import Runtime

__all__ = ["STATE_KEY", "http_routes", "job_status"]

STATE_KEY = "trainer.status"


def job_status(rt: Runtime) -> dict[str, Any]:
    """The status dict the service keeps in ``rt.state`` (made on first use)."""
    return rt.state.setdefault(STATE_KEY, {"current": None, "last": None})


def http_routes(rt: Runtime) -> list[Route]:
    async def status(_request: Request) -> JSONResponse:
        st = job_status(rt)
        current = dict(st["current"]) if st["current"] else None
        if current is not None:
            current["seconds"] = round(time.time() - current.pop("started", time.time()), 1)
        return JSONResponse({"current": current, "last": st["last"]})

    return [Route("/v1/training/status", status, methods=["GET"])]
