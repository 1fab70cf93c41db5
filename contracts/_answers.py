"""Comparing short answers, the way SQuAD does (Rajpurkar et al. 2016, the official v1.1
evaluation script): the held-out QA evaluation scores with it, and plugins use it to tell
one answer from a paraphrase of it."""

from __future__ import annotations

import re
import string
from collections import Counter

__all__ = ["normalize_answer", "token_f1"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1: the harmonic mean of the precision and recall of the two answers'
    shared tokens after ``normalize_answer`` (a bag of words: a shared token counts as
    often as it occurs in both)."""
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    shared = sum((Counter(pred) & Counter(ref)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred), shared / len(ref)
    return 2 * precision * recall / (precision + recall)
