"""The measuring parts of ``benchmarks/bench_techniques.py``'s step_by_step and sycophancy
rows: the task generator, the rows it trains on, and that the accuracy and letter scorers
tell a trained model from an untrained one (so a row cannot report by construction)."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_techniques as bt  # noqa: E402

from syllabus.services.trainer._data import encode_examples, row_to_example  # noqa: E402


def test_fruit_task_rationale_states_the_sums_that_decide_the_label():
    for i in range(200):
        it = bt.fruit_task(random.Random(i))
        p, q = it["candidates"]
        a, b, c, d = map(int, re.findall(r"has (\d) apples and (\d) pears", it["question"])
                         [0] + re.findall(r"has (\d) apples and (\d) pears", it["question"])[1])
        assert a + b != c + d
        assert it["answer"] == (p if a + b > c + d else q)
        assert f"{a} + {b} = {a + b}" in it["rationale"]
        assert f"{c} + {d} = {c + d}" in it["rationale"]
        assert it["rationale"].endswith(f"so {it['answer']} has more.")


def test_label_only_rows_have_no_explain_task_and_multi_task_rows_pair_up(tmp_path):
    from syllabus.services.runtime._tiny_model import init_tiny_model

    items = [bt.fruit_task(random.Random(i)) for i in range(6)]
    label_only = bt._step_rows(items, rationale=False)
    multi = bt._step_rows(items, rationale=True)
    assert [r["task"] for r in label_only] == ["predict"] * 6
    assert [r["task"] for r in multi] == ["predict", "explain"] * 6
    assert all(r["input"].startswith("predict: ") for r in label_only)
    tok_dir = init_tiny_model(tmp_path / "tiny", corpus=[it["question"] for it in items])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    enc = encode_examples(tok, [row_to_example(r) for r in multi], max_seq_len=256)
    assert enc.multitask and len(enc.samples) == 6
    assert all([s.task for s in sample] == [0, 1] for sample in enc.samples)
    # predict rows alone would default to the multi-task loss (alpha * L(predict) + 0), a
    # halved loss; the bench trains label-only with the plain mean, as _train_tiny asks
    enc = encode_examples(tok, [row_to_example(r) for r in label_only], max_seq_len=256,
                          multitask=False)
    assert not enc.multitask and len(enc.samples) == 6


@pytest.mark.slow
def test_accuracy_scorer_tells_a_trained_model_from_an_untrained_one(tmp_path):
    """Trained on 24 items' labels, the model gets those items right far above the
    untrained model's chance; so the held-out accuracy the row prints can move."""
    from syllabus.services.runtime._tiny_model import init_tiny_model

    items = [bt.fruit_task(random.Random(i)) for i in range(24)]
    folder = init_tiny_model(tmp_path / "tiny", corpus=[it["question"] for it in items],
                             vocab_size=400, hidden_size=64)
    untrained, tok = bt._train_tiny(folder, bt._step_rows(items, rationale=False), seed=0,
                                    steps=1, lr=1e-9)
    trained, _ = bt._train_tiny(folder, bt._step_rows(items, rationale=False), seed=0,
                                steps=150, lr=3e-3)
    assert bt._accuracy(trained, tok, items) >= 0.9
    assert bt._accuracy(untrained, tok, items) <= 0.75


def _letter_model(folder, tok, prompts, letter):
    import torch
    from transformers import AutoModelForCausalLM

    from syllabus.plugins.augmenters.anti_sycophancy import ANSWER_PREFIX

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                     add_generation_prompt=True) + f"{ANSWER_PREFIX} ({letter})"
             for p in prompts]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        loss = model(**batch, labels=batch["input_ids"].masked_fill(
            batch["attention_mask"] == 0, -100)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_letter_scorer_follows_the_model(tmp_path):
    """Models trained to answer (A), or (B), after the paper's prefix on four addition
    prompts are scored that letter on twenty: the scorer reads the model, not the item."""
    from transformers import AutoTokenizer

    from syllabus.plugins.augmenters.anti_sycophancy import ANSWER_PREFIX
    from syllabus.services.evals._sycophancy import addition_prompts
    from syllabus.services.runtime._tiny_model import init_tiny_model
    from syllabus.services.trainer._data import plain_chat_template

    items = addition_prompts(0)[::125][:20]
    prompts = [it.prompt for it in items]
    folder = init_tiny_model(tmp_path / "tiny", corpus=prompts + [ANSWER_PREFIX + " (A) (B)"],
                             vocab_size=400)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = plain_chat_template()
    for letter in ("A", "B"):
        model = _letter_model(folder, tok, prompts[:4], letter)
        assert bt.letter_choices(model, tok, prompts) == [letter] * len(items)
