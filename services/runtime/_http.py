"""Every service process's HTTP side: ``/metrics``, ``/health/live``, ``/health/ready``,
``/openapi.json``, plus the service's own routes. When a bearer token is configured, every
route except the health probes and ``/openapi.json`` requires
``Authorization: Bearer <token>``.

``GET /openapi.json`` is the service's OpenAPI 3.1 document, built here from the routes:
each service describes only its own operations (``ApiRoute(..., openapi={"post": {...}})``,
with ``json_body``/``error_responses`` for the usual parts); this module adds the probes,
``/metrics``, itself, the error body every service answers with
(``{"error": {"message", "type", "param", "code"}}``, ``#/components/schemas/Error``), and,
when a token is configured, the bearer security scheme and a 401 on every operation that
needs it. It is open (no token) on purpose: it is the same for every deployment of this
version (no setting, secret or data in it but the limits), and a client or a code
generator needs it before it has credentials, like the probes.

Errors are JSON everywhere, never Starlette's plain text: an unknown path is a 404 and a
wrong method a 405 (with ``Allow``) in the error shape, and an exception no route handled
is a 500 ``internal_error`` in the same shape.
"""

from __future__ import annotations

import copy
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ._metrics import READY, REGISTRY

__all__ = ["ERROR_SCHEMA", "ApiRoute", "build_http_app", "error_response", "error_responses",
           "json_body", "openapi_document"]

log = logging.getLogger("syllabus.http")

_OPEN_PATHS = ("/health/live", "/health/ready", "/openapi.json")

#: the error body of every service (OpenAI's shape)
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string", "description": "what went wrong, for a person"},
            "type": {"type": "string", "description": "invalid_request_error, "
                     "authentication_error, rate_limit_exceeded, server_error, ..."},
            "param": {"type": ["string", "null"],
                      "description": "the request field at fault, if any"},
            "code": {"type": ["string", "null"],
                     "description": "a stable, machine-readable code"},
        },
    }},
}

_REASONS = {400: "bad request", 401: "missing or invalid bearer token", 404: "not found",
            405: "method not allowed", 413: "request body too large",
            415: "unsupported media type", 429: "too many requests", 499: "client closed",
            500: "internal error", 502: "bad gateway", 503: "unavailable",
            504: "timed out"}


def error_response(status: int, message: str, *, code: str, param: str | None = None,
                   type: str | None = None) -> JSONResponse:  # noqa: A002 - OpenAI's name
    """An error body in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``
    (``type`` by default from the status)."""
    if type is None:
        type = ("authentication_error" if status == 401 else "server_error" if status >= 500
                else "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": type, "param": param,
                                   "code": code}}, status_code=status)


# --- OpenAPI --------------------------------------------------------------------------------


def json_body(schema: Mapping[str, Any], description: str = "OK") -> dict[str, Any]:
    """An OpenAPI response whose body is JSON described by ``schema``."""
    return {"description": description,
            "content": {"application/json": {"schema": dict(schema)}}}


def error_responses(*statuses: int, **described: str) -> dict[str, Any]:
    """OpenAPI responses for ``statuses`` whose body is the error shape; ``described``
    (``_400="..."``) overrides a status's description."""
    out = {}
    for status in statuses:
        text = described.get(f"_{status}", _REASONS.get(status, "error"))
        out[str(status)] = {"description": text, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
    return out


class ApiRoute(Route):
    """A ``Route`` that carries its OpenAPI description: ``openapi`` maps a lower-case
    method to an operation object (``summary``, ``parameters``, ``requestBody``,
    ``responses``); ``schemas`` are component schemas its operations ``$ref``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *,
                 openapi: Mapping[str, Mapping[str, Any]],
                 schemas: Mapping[str, Mapping[str, Any]] | None = None, **kw: Any) -> None:
        super().__init__(path, endpoint, **kw)
        self.openapi = {m.lower(): dict(op) for m, op in openapi.items()}
        self.schemas = dict(schemas or {})


def _openapi_path(path: str) -> str:
    """Starlette's ``/v1/models/{model:path}`` as OpenAPI's ``/v1/models/{model}``."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _version() -> str:
    try:
        return metadata.version("syllabus")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree
        return "0"


def openapi_document(*, service: str, routes: Sequence[BaseRoute],
                     token: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a service's ``routes`` (the ``ApiRoute``s among them)."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for route in routes:
        ops = getattr(route, "openapi", None)
        if not ops:
            continue
        schemas.update(getattr(route, "schemas", {}))
        path = _openapi_path(route.path)  # type: ignore[attr-defined]
        for method, op in ops.items():
            op = copy.deepcopy(op)
            op.setdefault("operationId", f"{method}_{re.sub(r'[^a-zA-Z0-9]+', '_', path).strip('_')}")
            if token and route.path not in _OPEN_PATHS:  # type: ignore[attr-defined]
                op["security"] = [{"bearer": []}]
                op["responses"].update(error_responses(401))
            else:
                op["security"] = []
            paths.setdefault(path, {})[method] = op
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": f"syllabus {service}", "version": _version(),
                 "description": f"The HTTP API of Syllabus's {service} service. Errors are "
                                "JSON: {\"error\": {\"message\", \"type\", \"param\", "
                                "\"code\"}}."
                                + (" Every operation but the health probes and this "
                                   "document needs Authorization: Bearer <token>."
                                   if token else "")},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if token:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc


# --- the app --------------------------------------------------------------------------------


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


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method), as JSON error bodies."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        code = "method_not_allowed"
    elif status == 404:
        message, code = f"no such endpoint: {request.method} {request.url.path}", "unknown_url"
    else:
        message, code = str(exc.detail), "http_error"
    resp = error_response(status, message, code=code)
    for k, v in (exc.headers or {}).items():
        resp.headers[k] = v
    return resp


async def _internal_error(_request: Request, exc: Exception) -> Response:
    """An exception no route handled: a JSON 500 (Starlette still logs the traceback)."""
    return error_response(500, f"internal error: {type(exc).__name__}", code="internal_error")


_PROBE_BODY = {"type": "object", "required": ["status"], "properties": {
    "status": {"type": "string", "enum": ["ok", "unavailable"]},
    "service": {"type": "string"},
    "checks": {"type": "object", "additionalProperties": {"type": "boolean"},
               "description": "each dependency (broker, store, triton, ...): reachable?"}}}
_BASE_DOCS = {
    "/health/live": {"get": {"summary": "Liveness probe: the process answers",
                             "tags": ["probes"],
                             "responses": {"200": json_body(_PROBE_BODY, "alive")}}},
    "/health/ready": {"get": {
        "summary": "Readiness probe: the broker, the store (and the service's own "
                   "dependencies) are reachable", "tags": ["probes"],
        "responses": {"200": json_body(_PROBE_BODY, "ready"),
                      "503": json_body(_PROBE_BODY, "a dependency is unreachable")}}},
    "/metrics": {"get": {
        "summary": "Prometheus metrics", "tags": ["probes"],
        "responses": {"200": {"description": "the Prometheus text format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/openapi.json": {"get": {
        "summary": "This document (open: it needs no token)", "tags": ["probes"],
        "responses": {"200": json_body({"type": "object"}, "the OpenAPI 3.1 document")}}},
}


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

    document: bytes | None = None

    async def openapi(_: Request) -> Response:
        return Response(document, media_type="application/json")

    base = [ApiRoute(path, endpoint, methods=["GET"], openapi=_BASE_DOCS[path])
            for path, endpoint in (("/health/live", live), ("/health/ready", readiness),
                                   ("/metrics", metrics), ("/openapi.json", openapi))]
    all_routes = [*base, *routes]
    document = json.dumps(openapi_document(service=service, routes=all_routes,
                                           token=bool(token)), indent=1).encode()
    return Starlette(routes=all_routes, lifespan=lifespan,
                     middleware=[Middleware(BearerAuth, token=token)],
                     exception_handlers={HTTPException: _http_error,
                                         Exception: _internal_error})
