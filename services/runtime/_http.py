"""Every service process's HTTP side: ``/metrics``, ``/health/live``, ``/health/ready``,
plus the service's own routes. When a bearer token is configured, every route except the
health probes requires ``Authorization: Bearer <token>``."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ._metrics import READY, REGISTRY

__all__ = ["build_http_app", "error_response"]

_OPEN_PATHS = ("/health/live", "/health/ready")


def error_response(status: int, message: str, *, code: str, param: str | None = None,
                   type: str | None = None) -> JSONResponse:  # noqa: A002 - OpenAI's name
    """An error body in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``
    (``type`` by default from the status)."""
    if type is None:
        type = ("authentication_error" if status == 401 else "server_error" if status >= 500
                else "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": type, "param": param,
                                   "code": code}}, status_code=status)


class BearerAuth:
    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.expected is None or scope["type"] != "http"
                or scope.get("path") in _OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        got = dict(scope.get("headers") or []).get(b"authorization", b"")
        if not hmac.compare_digest(got, self.expected):
            resp = error_response(401, "missing or invalid bearer token", code="unauthorized")
            resp.headers["WWW-Authenticate"] = "Bearer"
            await resp(scope, receive, send)
            return
        await self.app(scope, receive, send)


def build_http_app(*, service: str, ready: Callable[[], Awaitable[dict[str, bool]]],
                   routes: Sequence[BaseRoute] = (), token: str | None = None,
                   lifespan=None) -> Starlette:
    async def live(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service})

    async def readiness(_: Request) -> Response:
        checks = await ready()
        ok = all(checks.values())
        READY.labels(service=service).set(1 if ok else 0)
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    base = [Route("/health/live", live), Route("/health/ready", readiness),
            Route("/metrics", metrics)]
    return Starlette(routes=[*base, *routes], lifespan=lifespan,
                     middleware=[Middleware(BearerAuth, token=token)])
