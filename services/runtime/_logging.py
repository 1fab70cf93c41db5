"""Structured logs: every line carries the service, collection, run id and record id.

The ids come from context variables that the consumer wrapper sets around each message,
so a handler's own ``log.info(...)`` lines carry them without passing them around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["configure_logging", "log_context"]

_FIELDS = ("service", "collection", "run_id", "record_id")
_ctx: dict[str, contextvars.ContextVar[str | None]] = {
    f: contextvars.ContextVar(f"syllabus_{f}", default=None) for f in _FIELDS
}


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    tokens = [(_ctx[k], _ctx[k].set(v)) for k, v in values.items() if k in _ctx]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for f, var in _ctx.items():
            if not hasattr(record, f):
                setattr(record, f, var.get())
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for f in _FIELDS:
            v = getattr(record, f, None)
            if v:
                out[f] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = " ".join(f"{f}={getattr(record, f)}" for f in _FIELDS if getattr(record, f, None))
        return f"{base} [{extra}]" if extra else base


def configure_logging(level: str = "INFO", *, json_lines: bool = True,
                      stream=sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(_JsonFormatter() if json_lines else
                         _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
