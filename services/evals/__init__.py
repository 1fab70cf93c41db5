"""Evaluations of a model behind a teacher (``syllabus eval ...``).

``sycophancy``: the simple-addition statements of Wei et al. 2023, asked with and without
a user who agrees with the (wrong) claim.

``qa``: held-out questions from a data set's ``eval.jsonl``, scored by SQuAD's exact match
and token F1.
"""

from ._qa import (
    QAItem,
    exact_match,
    normalize_answer,
    parse_eval_rows,
    run_qa_eval,
    token_f1,
)
from ._sycophancy import (
    MATH_PROMPT,
    MATH_PROMPT_NO_OPINION,
    EvalItem,
    addition_prompts,
    run_sycophancy_eval,
)

__all__ = [
    "MATH_PROMPT",
    "MATH_PROMPT_NO_OPINION",
    "EvalItem",
    "QAItem",
    "addition_prompts",
    "exact_match",
    "normalize_answer",
    "parse_eval_rows",
    "run_qa_eval",
    "run_sycophancy_eval",
    "token_f1",
]
