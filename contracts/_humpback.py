"""Humpback's system-prompt tags (Li et al. 2023, §2.3 "Training"): seed data is tagged
S_a, self-augmented data S_w, and the model is asked with S_a at inference, so it answers
in the seed data's style. Shared by the ``backtranslation`` technique (it tags its records
S_w), the data set builder (it tags the other records S_a when a data set holds S_w
records) and the server (it sends S_a when a request has no system message and the model
was trained on tagged data)."""

from __future__ import annotations

from typing import Any

__all__ = ["HUMPBACK_AUGMENTED_SYSTEM", "HUMPBACK_SEED_SYSTEM", "inference_system"]

#: S_w: the tag of self-augmented (backtranslated, curated) examples
HUMPBACK_AUGMENTED_SYSTEM = "Answer with knowledge from web search."
#: S_a: the tag of seed examples, and the system prompt at inference
HUMPBACK_SEED_SYSTEM = "Answer in the style of an AI Assistant."


def inference_system(manifest: dict[str, Any] | None) -> str | None:
    """The system prompt a model trained on the data set of ``manifest`` is asked with:
    S_a when the builder tagged it (``manifest["humpback_tags"]``), else None."""
    tags = (manifest or {}).get("humpback_tags") or {}
    system = tags.get("inference_system")
    return system if isinstance(system, str) and system else None
