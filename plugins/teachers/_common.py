"""What the teacher plugins share: secrets kept out of ``repr``, option checks, error text.

Standard library only, so that importing a plugin stays light (the transformers teacher
imports torch on its first call, never here). The HTTP helpers are in ``_http``.
Each helper that raises takes ``who`` (``"openai teacher"``, ...) to start its message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: the most characters of a server's or library's message an error carries
MAX_MESSAGE = 500


class Secret:
    """Holds a secret so that printing its holder does not print it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'**********'"


def reveal(value: Any) -> str:
    """A ``str``, or the value of anything with ``get_secret_value()`` (``SecretStr``)."""
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if callable(getter) else value)


def scrub(message: str, *secrets: Secret | None) -> str:
    """``message`` with each secret (of 4 characters or more) replaced by ``***``."""
    for secret in secrets:
        if secret is not None and len(secret.value) >= 4:
            message = message.replace(secret.value, "***")
    return message


def snippet(text: Any) -> str:
    """``text`` on one line, cut to ``MAX_MESSAGE`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def cut_at_stop(text: str, stops: Sequence[str] | None) -> str:
    """``text`` up to the first of the (non-empty) stop strings in it."""
    cuts = [i for i in (text.find(s) for s in stops or () if s) if i >= 0]
    return text[:min(cuts)] if cuts else text


# --- options ---------------------------------------------------------------------------


def choice_error(who: str, key: str, choices: Iterable[str], got: Any) -> ValueError:
    """The error for an option that is not one of ``choices``."""
    return ValueError(f"{who}: {key} must be one of {', '.join(choices)}; got {got!r}")


def required_model(who: str, value: Any, hint: str) -> str:
    """The ``model`` option, stripped; ``hint`` says what it should be when it is unset."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{who}: option 'model' is required ({hint})")
    return value.strip()


def mapping_option(who: str, value: Any, key: str) -> dict[str, Any]:
    """A mapping option given as a mapping or a JSON object string (``None``: empty)."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{who}: {key} must be a mapping or a JSON object") from exc
    if not isinstance(value, Mapping):
        raise ValueError(f"{who}: {key} must be a mapping or a JSON object")
    return {str(k): v for k, v in value.items()}


def positive(who: str, options: Mapping[str, Any], key: str, default: float) -> float:
    """``options[key]`` as a positive number; ``default`` when unset."""
    raw = options.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{who}: {key} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{who}: {key} must be positive, got {raw!r}")
    return value


def count(who: str, options: Mapping[str, Any], key: str, default: int) -> int:
    """``options[key]`` as a whole number, 0 or more; ``default`` when unset."""
    raw = options.get(key)
    if raw is None:
        return default
    try:
        value = int(str(raw).strip()) if not isinstance(raw, bool) else None
    except ValueError:
        value = None
    if value is None or value < 0:
        raise ValueError(f"{who}: {key} must be a whole number, 0 or more, got {raw!r}")
    return value


def bool_option(who: str, options: Mapping[str, Any], key: str, default: bool) -> bool:
    """``options[key]`` as a bool (TOML booleans, or "true"/"false" from the environment)."""
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{who}: {key} must be true or false, got {value!r}")
