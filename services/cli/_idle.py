"""``syllabus serve NAME --exit-when-idle SECONDS``: a service that stops once its work is done.

This is what a Kubernetes Job needs, such as the trainer's KEDA ``ScaledJob``: KEDA starts
a Job when the durable consumer has messages waiting; the pod takes one, handles it (the
message stays unacknowledged until the handler is done), and exits with status 0 once its
durable consumers have had nothing waiting and nothing unacknowledged for SECONDS in a
row, so the Job completes. A long-running Deployment does not use the option.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import uvicorn
from starlette.applications import Starlette

from syllabus.contracts import STREAM_NAME

__all__ = ["consumers_idle", "serve_until_idle"]

log = logging.getLogger("syllabus.serve")


async def consumers_idle(rt, durables: list[str]) -> bool:
    """True when none of ``durables`` has a message waiting or unacknowledged."""
    for durable in durables:
        info = await rt.bus.js.consumer_info(STREAM_NAME, durable)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def _watch(server: uvicorn.Server, rt, idle_seconds: float, poll: float) -> None:
    durables = sorted({sub.config.durable_name for sub in rt.bus.broker.subscribers
                       if getattr(getattr(sub, "config", None), "durable_name", None)})
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.05)
    quiet_since: float | None = None
    while not server.should_exit:
        try:
            idle = await consumers_idle(rt, durables)
        except Exception as exc:  # not connected yet, or NATS briefly away: not idle
            log.debug("idle check failed: %s", exc)
            idle = False
        now = time.monotonic()
        if not idle:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= idle_seconds:
            log.info("consumers %s idle for %.0fs: exiting", ", ".join(durables), idle_seconds)
            server.should_exit = True
            return
        await asyncio.sleep(poll)


async def serve_until_idle(app: Starlette, *, host: str, port: int, idle_seconds: float,
                           poll: float = 1.0) -> None:
    """Serve ``app`` (from ``build_service_app``) until its consumers have been idle for
    ``idle_seconds``; then shut down gracefully (the broker drains and closes)."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None,
                                           access_log=False))
    watcher = asyncio.create_task(_watch(server, app.state.runtime, idle_seconds,
                                         min(poll, idle_seconds)))
    try:
        await server.serve()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
