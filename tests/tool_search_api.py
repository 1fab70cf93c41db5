"""A small real HTTP API for the solution-search tests and the tools benchmark.

``LocalToolApi`` runs uvicorn + starlette in a background thread on a free 127.0.0.1 port
and serves ``GET /api/{tool}``: each tool has a behaviour and required query arguments:

* ``ok``: ``200 {"tool", "args", "result"}`` when every required argument is given (and
  equals its expected value, when one is set), else ``400 {"error": ...}``;
* ``500``: ``500 {"error": "internal error"}``; ``html``: a 200 HTML error page.

``tools(...)`` makes the ``ApiTool``s for it (one per tool, ``category`` given by the
caller), and ``caller()`` the guarded caller that may reach it (127.0.0.1 allowed
explicitly, as a test must). Every request is counted in ``.hits``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Self

from syllabus.contracts import ApiTool

from ._local_server import LocalServer

__all__ = ["LocalToolApi", "ToolSpec"]


@dataclass
class ToolSpec:
    name: str
    description: str
    behaviour: str = "ok"
    #: required query argument -> the value it must have (None: any value)
    required: dict[str, Any] = field(default_factory=dict)
    category: str = "default"
    enum: dict[str, list[str]] = field(default_factory=dict)


class LocalToolApi(LocalServer):
    def __init__(self, specs: list[ToolSpec]) -> None:
        super().__init__(None, name="tool-api", what="the local tool API", start_timeout=10.0)
        self.specs = {s.name: s for s in specs}
        self.hits: Counter[str] = Counter()

    async def _handle(self, request: Any) -> Any:
        from starlette.responses import HTMLResponse, JSONResponse

        name = request.path_params["tool"]
        self.hits[name] += 1
        spec = self.specs.get(name)
        if spec is None:
            return JSONResponse({"error": f"no tool {name}"}, 404)
        if spec.behaviour == "500":
            return JSONResponse({"error": "internal error"}, 500)
        if spec.behaviour == "html":
            return HTMLResponse("<html><body><h1>Service unavailable</h1></body></html>")
        args = dict(request.query_params)
        for key, expected in spec.required.items():
            if key not in args:
                return JSONResponse({"error": f"missing required argument {key!r}"}, 400)
            if expected is not None and str(args[key]).lower() != str(expected).lower():
                return JSONResponse({"error": f"unknown {key} {args[key]!r}"}, 400)
        return JSONResponse({"tool": name, "args": args,
                             "result": f"{spec.description} -> done for "
                                       + ", ".join(f"{k}={v}" for k, v in sorted(args.items()))})

    def tools(self) -> list[ApiTool]:
        out = []
        for s in self.specs.values():
            props: dict[str, Any] = {}
            for key, expected in s.required.items():
                schema: dict[str, Any] = {"type": "string", "description": f"the {key}"}
                if key in s.enum:
                    schema["enum"] = s.enum[key]
                if expected is not None:
                    schema["example"] = expected
                props[key] = schema
            out.append(ApiTool(
                name=s.name, description=s.description,
                parameters={"type": "object", "properties": props,
                            "required": sorted(s.required)},
                locations={k: "query" for k in s.required}, category=s.category,
                method="GET", path=f"/api/{s.name}", server=self.url,
                response_media_type="application/json",
                example_arguments={k: v for k, v in s.required.items() if v is not None}))
        return out

    def caller(self) -> Any:
        from syllabus.services.api_annotator._caller import CallPolicy, GuardedCaller

        return GuardedCaller(CallPolicy(allowed_hosts=(f"127.0.0.1:{self.port}",),
                                        allow_private_hosts=("127.0.0.1",),
                                        call_timeout=5.0))

    def start(self) -> Self:
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.app = Starlette(routes=[Route("/api/{tool}", self._handle, methods=["GET"])])
        return super().start()
