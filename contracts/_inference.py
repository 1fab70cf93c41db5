"""How a trained model is asked, from its data set's manifest (the server reads the copy
stored with the model).

Humpback's system-prompt tags (Li et al. 2023, §2.3 "Training"): seed data is tagged
S_a, self-augmented data S_w, and the model is asked with S_a at inference, so it answers
in the seed data's style. Shared by the ``backtranslation`` technique (it tags its records
S_w), the data set builder (it tags the other records S_a when a data set holds S_w
records) and the server (it sends S_a when a request has no system message and the model
was trained on tagged data).

Distilling step-by-step (Hsieh et al. 2023): a model trained on the ``step-by-step``
format's ``predict:`` / ``explain:`` rows is asked with the ``predict:`` prefix, as in
the paper (the rationale task is for training only); ``inference_prefix`` says so."""

from __future__ import annotations

from typing import Any

__all__ = ["HUMPBACK_AUGMENTED_SYSTEM", "HUMPBACK_SEED_SYSTEM", "PREDICT_PREFIX",
           "inference_prefix", "inference_system"]

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


#: the task prefix of distilling step-by-step's answer task
PREDICT_PREFIX = "predict: "


def inference_prefix(manifest: dict[str, Any] | None) -> str | None:
    """The prefix of the user's turn for a model trained on the data set of ``manifest``:
    ``"predict: "`` for the ``step-by-step`` format, else None."""
    return PREDICT_PREFIX if (manifest or {}).get("format") == "step-by-step" else None
