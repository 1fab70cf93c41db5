"""What several ``syllabus`` commands share: click option callbacks."""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["key_value_pairs"]


def key_value_pairs(_ctx: Any, _param: Any, values: tuple[str, ...]) -> dict[str, Any]:
    """Callback of a ``multiple=True`` option of ``KEY=VALUE`` items: a dict, each VALUE
    parsed as JSON when it is JSON, else kept as a string."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE (VALUE as JSON, or a string)")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out
