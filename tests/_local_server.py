"""``LocalServer``: any ASGI app served by uvicorn in a background thread on a free
127.0.0.1 port (http, or https with ``tls=``), for the test servers that speak a real
protocol over a real socket (``tests.tool_api``, ``tests.tool_search_api``,
``tests.openai_server``). uvicorn is imported only when a server starts.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from .tool_api import TlsFiles

__all__ = ["LocalServer", "free_socket"]


def free_socket() -> socket.socket:
    """A listening, non-blocking socket on a free 127.0.0.1 port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class LocalServer:
    """Any ASGI app served by uvicorn in a thread on a free 127.0.0.1 port.

    ``name`` names the thread (``NAME-PORT``); ``what`` the server in errors (default: the
    name). ``start()`` waits up to ``start_timeout`` seconds and raises ``RuntimeError`` if
    the server does not come up; ``stop()`` stops it at once (requests in flight are cut off)
    and is idempotent.
    """

    def __init__(self, app: Any, name: str = "local-api", tls: TlsFiles | None = None, *,
                 what: str | None = None, start_timeout: float = 20.0) -> None:
        self.app = app
        self.name = name
        self.what = what or name
        self.tls = tls
        self.start_timeout = start_timeout
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        import uvicorn

        sock = free_socket()
        self.port = sock.getsockname()[1]
        tls = {} if self.tls is None else {"ssl_certfile": str(self.tls.cert),
                                           "ssl_keyfile": str(self.tls.key)}
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=1, **tls)
        server = uvicorn.Server(config)
        self._server = server
        failure: list[BaseException] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported by start()
                failure.append(exc)
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"{self.name}-{self.port}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not server.started:
            if failure or not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.what} did not start: {failure!r}")
            time.sleep(0.01)
        return self

    def stop(self, *, strict: bool = False) -> None:
        """Stop at once; with ``strict``, raise if the thread is still alive 10 s later."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
            server.force_exit = True
        if thread is not None:
            thread.join(timeout=10)
            if strict and thread.is_alive():
                raise RuntimeError(f"{self.what} did not stop")
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
