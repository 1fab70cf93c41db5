"""What several ``syllabus`` commands share: click option callbacks, and the settings."""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["cli_settings", "key_value_pairs", "settings_error"]


def settings_error(exc: Exception) -> str:
    """A bad recipe or environment variable, said plainly: each problem on a line with
    the setting it is about (``teacher.json_mode: not a setting of [teacher] ...``)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "<recipe>"
        if err["type"] == "extra_forbidden":
            section = ".".join(str(p) for p in err["loc"][:-1])
            hint = (f" (a teacher plugin's own options go under [{section}.options])"
                    if section == "teacher" else "")
            lines.append(f"{where}: not a setting of [{section}]{hint}")
        else:
            lines.append(f"{where}: {err['msg']}")
    return "\n".join(lines)


def cli_settings(**overrides: Any) -> Any:
    """The settings (recipe, environment, ``overrides``); a bad one is a click error that
    names it, never a traceback."""
    from ..runtime import load_settings

    try:
        return load_settings(**overrides)
    except Exception as exc:  # a bad recipe or environment variable: say which
        raise click.ClickException(f"invalid settings: {settings_error(exc)}") from exc


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
