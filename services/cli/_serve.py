"""One service as a process: its router on a broker, plus the HTTP side, in one ASGI app."""

from __future__ import annotations

from contextlib import asynccontextmanager

from starlette.applications import Starlette

from ..runtime import Runtime, Settings, build_http_app
from ._services import load_service

__all__ = ["build_service_app"]


def build_service_app(name: str, settings: Settings, *, runtime: Runtime | None = None) -> Starlette:
    module = load_service(name)
    rt = runtime or Runtime.create(settings, client_name=f"syllabus-{name}")
    rt.bus.broker.include_router(module.build_router(rt))
    routes = module.http_routes(rt) if hasattr(module, "http_routes") else []

    @asynccontextmanager
    async def lifespan(_app):
        await rt.bus.start()
        try:
            # optional service hooks: the server starts (and stops) its Triton here
            if hasattr(module, "startup"):
                await module.startup(rt)
            yield
        finally:
            if hasattr(module, "shutdown"):
                await module.shutdown(rt)
            await rt.bus.close()

    async def ready() -> dict[str, bool]:
        checks = await rt.ready()
        if hasattr(module, "ready"):  # optional service hook: the server adds its Triton
            checks.update(await module.ready(rt))
        return checks

    token = settings.http.token.get_secret_value() if settings.http.token else None
    app = build_http_app(service=name, ready=ready, routes=routes, token=token,
                         lifespan=lifespan)
    app.state.runtime = rt
    return app
