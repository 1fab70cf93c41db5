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

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from syllabus.contracts import ApiTool

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


class LocalToolApi:
    def __init__(self, specs: list[ToolSpec]) -> None:
        self.specs = {s.name: s for s in specs}
        self.hits: Counter[str] = Counter()
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    def start(self) -> LocalToolApi:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Route

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/api/{tool}", self._handle, methods=["GET"])])
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                               lifespan="off", timeout_graceful_shutdown=1))
        self._server = server

        def run() -> None:
            try:
                server.run(sockets=[sock])
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"tool-api-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local tool API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> LocalToolApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
