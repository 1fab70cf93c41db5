"""The held-out QA evaluation (``syllabus eval qa``, the server's gate): SQuAD's scores, the
data set formats, and the run against a teacher."""

from __future__ import annotations

import json
import re

import pytest

from syllabus.contracts import Completion, TeacherError
from syllabus.services.evals import (
    exact_match,
    normalize_answer,
    parse_eval_rows,
    run_qa_eval,
    token_f1,
)


def test_squad_scores():
    assert normalize_answer("The  Queen, of the hive!") == "queen of hive"
    assert exact_match("the Queen.", "queen") == 1.0
    assert exact_match("a queen bee", "queen") == 0.0
    # 2 shared tokens: precision 2/4, recall 2/2 -> F1 2/3
    assert token_f1("one queen per colony", "one queen") == pytest.approx(2 / 3)
    assert token_f1("bees bees", "bees") == pytest.approx(2 / 3)  # a bag of words
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    assert token_f1("drones", "workers") == 0.0


def test_every_export_format_gives_items():
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Q1?"},
                      {"role": "assistant", "content": "A1"}]},
        {"instruction": "Q2?", "input": "context", "output": "A2", "system": "S"},
        {"conversations": [{"from": "human", "value": "Q3?"}, {"from": "gpt", "value": "A3"}]},
        {"task": "predict", "input": "predict: Q4?", "output": "A4"},
        {"task": "explain", "input": "explain: Q4?", "output": "because"},
    ]
    items = parse_eval_rows("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert [i.reference for i in items] == ["A1", "A2", "A3", "A4"]
    assert [m.role for m in items[0].messages] == ["system", "user"]
    assert items[1].messages[-1].content == "Q2?\n\ncontext" and items[1].messages[0].content == "S"
    assert items[2].messages[0].role == "user" and items[3].line == 4


@pytest.mark.parametrize("line, message", [
    ("not json", "line 2 is not JSON"),
    ('{"messages": [{"role": "user", "content": "q"}]}', "line 2: the messages have no "
                                                         "assistant answer"),
    ('{"text": "x"}', "line 2: not an openai, alpaca, sharegpt or step-by-step row (keys: text)"),
])
def test_bad_rows_name_the_file_and_line(line, message):
    good = json.dumps({"instruction": "q", "output": "a"})
    with pytest.raises(ValueError, match=re.escape("eval.jsonl: " + message)):
        parse_eval_rows(f"{good}\n{line}\n", source="eval.jsonl")


class _Teacher:
    kind, model = "scripted", "m"

    def __init__(self, answers: dict[str, str | Exception]) -> None:
        self.answers = answers
        self.params = []

    async def complete(self, messages, *, params):
        self.params.append(params)
        answer = self.answers[messages[-1].content]
        if isinstance(answer, Exception):
            raise answer
        return Completion(text=answer, model=self.model)


async def test_run_scores_counts_and_errors():
    items = parse_eval_rows("\n".join(json.dumps({"instruction": q, "output": a}) for q, a in
                                      [("q1", "one queen"), ("q2", "the waggle dance"),
                                       ("q3", "wax")]))
    teacher = _Teacher({"q1": " One queen. ", "q2": "a dance",
                        "q3": TeacherError("down", retryable=False)})
    result = await run_qa_eval(teacher, items, max_tokens=7)
    assert result["items"] == 3 and result["errors"] == 1
    assert result["exact_match"] == pytest.approx(1 / 3)
    # q2: "dance" vs "waggle dance": P 1, R 1/2 -> 2/3
    assert result["token_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert "line 3: down" in result["error_examples"][0]
    assert all(p.temperature == 0 and p.max_tokens == 7 for p in teacher.params)
    assert (await run_qa_eval(teacher, items, limit=1))["items"] == 1
    with pytest.raises(TeacherError, match="every QA-eval call failed"):
        await run_qa_eval(_Teacher({"q1": TeacherError("x", retryable=False)}), items[:1])
