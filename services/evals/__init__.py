"""Evaluations of a model behind a teacher (``syllabus eval ...``).

``sycophancy``: the simple-addition statements of Wei et al. 2023, asked with and without
a user who agrees with the (wrong) claim.
"""

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
    "addition_prompts",
    "run_sycophancy_eval",
]
