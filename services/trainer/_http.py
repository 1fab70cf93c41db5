"""``GET /v1/training/status``: what this trainer replica is doing.

Answers ``{"current": {...} | null, "last": {...} | null}``: the running job (job and
model ids, data set, method, processes, step, total steps, last loss and evaluation loss,
tokens/s, seconds since it started) and the last job this replica finished (its outcome
and metrics, or the failure reason). The bus events say the same for every replica; this
is the per-pod view for an operator or a probe. It needs the bearer token when
``http.token`` is set, like every route but the health probes.
"""

from __future__ import annotations

import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..runtime import Runtime
from ..runtime._http import ApiRoute, json_body

__all__ = ["STATE_KEY", "http_routes", "job_status"]

STATE_KEY = "trainer.status"


def job_status(rt: Runtime) -> dict[str, Any]:
    """The status dict the service keeps in ``rt.state`` (made on first use)."""
    return rt.state.setdefault(STATE_KEY, {"current": None, "last": None})


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (a diverged loss) as ``None``: JSON has
    no NaN, and Starlette refuses to write one (a 500)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


_NUMBER = {"type": ["number", "null"]}
_JOB = {"job_id": {"type": "string"}, "model_id": {"type": "string"}}
_STATUS_SCHEMAS = {
    "TrainingJob": {
        "type": "object", "required": ["job_id", "model_id"],
        "description": "the job this replica is running",
        "properties": {**_JOB, "dataset": {"type": "string"}, "method": {"type": "string"},
                       "processes": {"type": "integer"}, "backend": {"type": "string"},
                       "step": {"type": "integer"}, "total_steps": {"type": ["integer", "null"]},
                       "loss": _NUMBER, "eval_loss": _NUMBER, "tokens_per_second": _NUMBER,
                       "seconds": {"type": "number", "description": "since it started"}},
    },
    "TrainingOutcome": {
        "type": "object", "required": ["job_id", "model_id", "outcome"],
        "description": "the last job this replica finished",
        "properties": {**_JOB, "outcome": {"type": "string", "enum": ["completed", "failed"]},
                       "reason": {"type": "string"}, "store_prefix": {"type": "string"},
                       "metrics": {"type": "object"}},
    },
    "TrainingStatus": {
        "type": "object", "required": ["current", "last"],
        "properties": {
            "current": {"anyOf": [{"$ref": "#/components/schemas/TrainingJob"},
                                  {"type": "null"}]},
            "last": {"anyOf": [{"$ref": "#/components/schemas/TrainingOutcome"},
                               {"type": "null"}]},
        },
    },
}


def http_routes(rt: Runtime) -> list[ApiRoute]:
    async def status(_request: Request) -> JSONResponse:
        st = job_status(rt)
        current = dict(st["current"]) if st["current"] else None
        if current is not None:
            current["seconds"] = round(time.time() - current.pop("started", time.time()), 1)
        return JSONResponse(_finite({"current": current, "last": st["last"]}))

    docs = {"get": {"summary": "What this trainer replica is doing, and what it did last",
                    "responses": {"200": json_body(
                        {"$ref": "#/components/schemas/TrainingStatus"}, "the status")}}}
    return [ApiRoute("/v1/training/status", status, methods=["GET"], openapi=docs,
                     schemas=_STATUS_SCHEMAS)]
