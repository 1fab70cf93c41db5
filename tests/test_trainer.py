"""The trainer: answer-only label masking, the step-by-step multi-task loss, request
validation, and real torchrun jobs (two gloo processes) driven by the trainer service on a
real nats-server, on a data set version built by the real data set builder: progress, the
falling loss, both ranks, checkpoints in the store, the model artifact, resuming from a
checkpoint, gradient checkpointing (on, and the same losses), a crashed worker, and the
progress bar of ``syllabus train --wait``."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from syllabus.contracts import (
    RECORDS_ACCEPTED,
    TRAINING_REQUESTED,
    ChunkLineage,
    DatasetRequested,
    PluginRef,
    QARecord,
    TeacherRef,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
from syllabus.services.cli._model import model_group
from syllabus.services.cli._train import follow_job, train_command, upload_base_model
from syllabus.services.datasets import build
from syllabus.services.runtime import LocalStore, Runtime, replay
from syllabus.services.runtime._tiny_model import builtin_corpus, init_tiny_model
from syllabus.services.trainer import (
    IGNORE_INDEX,
    PLAIN_TEMPLATE,
    DataError,
    build_router,
    collate,
    encode_examples,
    encode_messages,
    hyperparameters,
    load_examples,
    model_id_for,
    multitask_loss,
    row_to_example,
    torchrun_command,
    worker_env,
)
from syllabus.services.trainer._data import (
    answer_counts,
    answer_mask,
    plain_chat_template,
    step_loss,
)
from syllabus.services.trainer._launch import parse_event

FACTS = [
    ("How many queens does a honey bee colony have?", "A colony has one queen.",
     "The passage says a colony has one queen, thousands of workers and some drones."),
    ("What do worker bees build?", "Worker bees build the wax comb.",
     "Workers secrete flakes of wax and shape them into the comb."),
    ("What does the waggle dance show?", "It shows the direction of food.",
     "The angle of the waggle run gives the direction relative to the sun."),
    ("What do varroa mites feed on?", "They feed on developing bees.",
     "Varroa mites feed on developing bees and spread viruses."),
    ("How do bees keep warm in winter?", "They cluster and shiver.",
     "In winter the bees form a cluster and shiver their flight muscles."),
    ("Where is nectar carried home?", "In the honey stomach.",
     "Nectar is carried home in the honey stomach and passed from bee to bee."),
    ("How do bees ripen honey?", "They fan their wings to evaporate water.",
     "Bees fan their wings until the honey is ripe, then cap the cells with wax."),
    ("What does a colony raise before it swarms?", "New queens in queen cells.",
     "A colony preparing to swarm raises new queens in queen cells along the comb."),
    ("How do beekeepers count mites?", "With a sugar roll or an alcohol wash.",
     "Beekeepers count mites with a sugar roll or alcohol wash before treating."),
    ("How many eggs can a queen lay?", "Up to two thousand a day.",
     "The queen lays up to two thousand eggs a day during the spring build-up."),
    ("What do foragers collect?", "Nectar and pollen.",
     "Foragers fly out to the flowers and bring back nectar and pollen."),
    ("What do guards do?", "They guard the entrance.",
     "Some workers stand at the entrance and guard it against robbers."),
]

HP = {"max_steps": 6, "learning_rate": 3e-3, "batch_size": 2, "max_seq_len": 128,
      "checkpoint_every": 3, "eval_every": 3, "log_every": 1, "cpu_processes": 2,
      "warmup_ratio": 0.0}


def _records() -> list[QARecord]:
    lineage = ChunkLineage(doc_id="d" * 64, filename="bees.md", media_type="text/markdown",
                           char_start=0, char_end=10, parser=PluginRef(name="markdown"),
                           chunker=PluginRef(name="structured"), settings_hash="h")
    return [QARecord(record_id=f"{i + 1:064x}", collection="bees", instruction=q, response=a,
                     rationale=r, chunk_id="c" * 64, lineage=lineage,
                     technique=PluginRef(name="qa-pairs", version="1"),
                     teacher=TeacherRef(kind="extractive", model="heuristics"))
            for i, (q, a, r) in enumerate(FACTS)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "model"
    corpus = [*builtin_corpus(), *(" ".join(f) for f in FACTS)]
    return init_tiny_model(out, corpus=corpus)


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny, local_files_only=True)


# --- data: rows, templates, labels -----------------------------------------------------


def _answer(tokenizer, ids, labels) -> str:
    return tokenizer.decode([t for t, lab in zip(ids, labels, strict=True)
                             if lab != IGNORE_INDEX])


def test_labels_cover_the_answer_tokens_only(tokenizer):
    msgs = [{"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What do worker bees build?"},
            {"role": "assistant", "content": "Worker bees build the wax comb."}]
    ids, labels = encode_messages(tokenizer, msgs)
    assert len(ids) == len(labels)
    target = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX]
    # one contiguous span at the end (the trailing newline after <|im_end|> is not a target)
    assert target == list(range(target[0], target[-1] + 1)) and target[-1] >= len(ids) - 2
    assert all(labels[i] == ids[i] for i in target)
    assert _answer(tokenizer, ids, labels) == "Worker bees build the wax comb.<|im_end|>"
    prompt = tokenizer.apply_chat_template(msgs[:2], add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"]
    assert ids[:len(prompt)] == prompt and target[0] == len(prompt)

    # a template without {% generation %} markers: found turn by turn, the same labels
    template = tokenizer.chat_template
    try:
        tokenizer.chat_template = template.replace("{% generation %}", "").replace(
            "{% endgeneration %}", "")
        assert encode_messages(tokenizer, msgs) == (ids, labels)
        # two assistant turns: both are targets, nothing else
        two = [*msgs, {"role": "user", "content": "And drones?"},
               {"role": "assistant", "content": "They mate."}]
        ids2, labels2 = encode_messages(tokenizer, two)
        assert _answer(tokenizer, ids2, labels2) == \
            "Worker bees build the wax comb.<|im_end|>They mate.<|im_end|>"
        # no chat template at all: the plain template, answer + EOS
        tokenizer.chat_template = None
        ids3, labels3 = encode_messages(tokenizer, msgs)
        assert _answer(tokenizer, ids3, labels3) == "Worker bees build the wax comb.<|im_end|>"
        assert "### Instruction:" in tokenizer.decode(ids3)
    finally:
        tokenizer.chat_template = template


def test_rows_of_every_format(tmp_path, tokenizer):
    alpaca = row_to_example({"instruction": "Summarise.", "input": "Bees make honey.",
                             "output": "Honey.", "system": "Be brief."})
    assert [m["role"] for m in alpaca.messages] == ["system", "user", "assistant"]
    assert alpaca.messages[1]["content"] == "Summarise.\n\nBees make honey."
    share = row_to_example({"conversations": [{"from": "human", "value": "Hi"},
                                              {"from": "gpt", "value": "Hello"}]})
    assert share.messages == [{"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello"}]
    sbs = row_to_example({"task": "explain", "input": "explain: Why?", "output": "Because.",
                          "metadata": {"record_id": "r1"}})
    assert (sbs.task, sbs.group) == ("explain", "r1")
    tool = row_to_example({
        "tools": [{"type": "function", "function": {"name": "get_hive", "parameters": {}}}],
        "messages": [
            {"role": "user", "content": "How heavy is hive 3?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "get_hive", "arguments": "{\"id\": 3}"}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "get_hive",
             "content": "{\"kg\": 41}"},
            {"role": "assistant", "content": "Hive 3 weighs 41 kg."}]})
    assert tool.messages[0]["role"] == "system" and "get_hive" in tool.messages[0]["content"]
    assert tool.messages[2]["content"] == \
        '<tool_call>{"name": "get_hive", "arguments": {"id": 3}}</tool_call>'
    ids, labels = encode_messages(tokenizer, tool.messages)
    answer = _answer(tokenizer, ids, labels)
    assert answer.startswith("<tool_call>") and answer.endswith("41 kg.<|im_end|>")
    assert "[get_hive]" not in answer  # the observation is context, not a target
    # the ShareGPT function-calling form of the same trajectory (tools as a JSON string)
    share_tool = row_to_example({
        "tools": json.dumps([{"name": "get_hive", "parameters": {}}]),
        "conversations": [
            {"from": "human", "value": "How heavy is hive 3?"},
            {"from": "function_call", "value": '{"name": "get_hive", "arguments": {"id": 3}}'},
            {"from": "observation", "value": '{"kg": 41}'},
            {"from": "gpt", "value": "Hive 3 weighs 41 kg."}]})
    assert [m["role"] for m in share_tool.messages] == ["system", "user", "assistant", "tool",
                                                         "assistant"]
    assert share_tool.messages[2]["content"] == tool.messages[2]["content"]

    bad = tmp_path / "train.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "q"}, '
                   '{"role": "assistant", "content": "a"}]}\n{"prompt": "x"}\n')
    with pytest.raises(DataError, match=r"train\.jsonl:2: not a data set row"):
        load_examples(bad)
    bad.write_text('{"messages": [{"role": "user", "content": "only a question"}]}\n')
    with pytest.raises(DataError, match=r"train\.jsonl:1: the row has no assistant turn"):
        load_examples(bad)


def test_step_by_step_multitask_loss_weights(tiny, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    rows = [{"task": t, "input": f"{t}: {q}", "output": a if t == "predict" else r,
             "metadata": {"record_id": f"r{i}"}}
            for i, (q, a, r) in enumerate(FACTS[:2]) for t in ("predict", "explain")]
    data = encode_examples(tokenizer, [row_to_example(r) for r in rows], max_seq_len=128)
    assert data.multitask and len(data.samples) == 2  # a record's two rows: one sample
    assert [s.task for s in data.samples[0]] == [0, 1]
    predict_only = encode_examples(tokenizer, [row_to_example(r) for r in rows
                                               if r["task"] == "predict"], max_seq_len=128)
    assert not predict_only.multitask and len(predict_only.samples) == 2  # not 0.5 * L
    model = AutoModelForCausalLM.from_pretrained(tiny, local_files_only=True)
    batch = collate(data.samples, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits

        def task_loss(task: int) -> float:  # the library's own loss, on one task's rows
            sel = batch["task"] == task
            return model(input_ids=batch["input_ids"][sel],
                         attention_mask=batch["attention_mask"][sel],
                         labels=batch["labels"][sel]).loss.item()

        l_predict, l_explain = task_loss(0), task_loss(1)
    half, _ = multitask_loss(logits, batch["labels"], batch["task"], alpha=0.5,
                             multitask=True)
    one, _ = multitask_loss(logits, batch["labels"], batch["task"], alpha=1.0, multitask=True)
    tenth, sums = multitask_loss(logits, batch["labels"], batch["task"], alpha=0.1,
                                 multitask=True)
    assert abs(l_predict - l_explain) > 1e-3  # the two tasks' losses differ
    assert one.item() == pytest.approx(l_predict, rel=1e-5)
    assert half.item() == pytest.approx(0.5 * l_predict + 0.5 * l_explain, rel=1e-5)
    assert tenth.item() == pytest.approx(0.1 * l_predict + 0.9 * l_explain, rel=1e-5)
    # plain SFT: the mean over every answer token, as transformers computes it
    plain, _ = multitask_loss(logits, batch["labels"], batch["task"], alpha=0.5,
                              multitask=False)
    tokens = sums["tok_predict"] + sums["tok_explain"]
    with torch.no_grad():
        whole = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss
    assert plain.item() == pytest.approx(whole.item(), rel=1e-5) and tokens > 0
    # the worker's path: logits only where an answer token is predicted, the same losses
    kept = answer_mask(batch["labels"])
    with torch.no_grad():
        few = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    logits_to_keep=kept).logits
    assert few.shape == (int(kept.sum()), logits.shape[-1]) < (logits.numel(),)
    for alpha, multitask, expected in ((0.1, True, tenth), (0.5, False, plain)):
        loss, part = multitask_loss(few, batch["labels"], batch["task"], alpha=alpha,
                                    multitask=multitask, kept=kept)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert part["tok_explain"] == sums["tok_explain"]


def test_hyperparameters_and_launch_command(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"learning_rate: .*greater than 0.*-1"):
        hyperparameters({}, {"learning_rate": -1})
    with pytest.raises(ValueError, match="lerning_rate"):
        hyperparameters({}, {"lerning_rate": 1e-4})
    with pytest.raises(ValueError, match="schedule"):
        hyperparameters({"schedule": "exponential"}, {})
    hp = hyperparameters({"epochs": 2, "batch_size": 8}, {"batch_size": 2})
    assert (hp.epochs, hp.batch_size, hp.lr("lora"), hp.lr("full")) == (2, 2, 2e-4, 2e-5)
    assert model_id_for("job-1", "bees/abc", "lora") == model_id_for("job-1", "bees/abc", "lora")
    assert model_id_for("job-1", "bees/abc", "lora").startswith("bees-lora-")
    assert model_id_for("job-2", "bees/abc", "lora") != model_id_for("job-1", "bees/abc", "lora")

    spec = tmp_path / "spec.json"
    one = torchrun_command(spec, nproc=2)
    assert one[-3:] == ["-m", "syllabus.services.trainer._worker", str(spec)]
    assert "--nproc_per_node=2" in one and "--standalone" in one
    multi = torchrun_command(spec, nproc=8, nnodes=4, master_addr="10.0.0.1",
                             torchrun="torchrun")
    assert multi[0] == "torchrun" and "--nnodes=4" in multi and "--node_rank=0" in multi
    assert "--master_addr=10.0.0.1" in multi and "--standalone" not in multi
    with pytest.raises(ValueError, match="master_addr"):
        torchrun_command(spec, nproc=1, nnodes=2)
    monkeypatch.setenv("SYLLABUS_STORE__SECRET_KEY", "s3cr3t")
    assert "SYLLABUS_STORE__SECRET_KEY" not in worker_env()


def test_model_init_tiny_cli(tmp_path):
    corpus = tmp_path / "notes.md"
    corpus.write_text("Bees build comb. " * 50 + "Queens lay eggs. " * 50)
    out = tmp_path / "tiny"
    result = CliRunner().invoke(model_group, ["init-tiny", "--out", str(out), "--corpus",
                                              str(corpus), "--vocab-size", "300"])
    assert result.exit_code == 0, result.output
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= \
        {p.name for p in out.iterdir()}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vocab_size"] <= 300 and cfg["model_type"] == "llama"


def test_step_loss_is_the_mean_over_the_whole_steps_answer_tokens(tiny, tokenizer):
    """Gradient accumulation and several processes: the micro-batches' shares add up to
    the loss of the step as one batch (not a mean of per-micro-batch means)."""
    import torch
    from transformers import AutoModelForCausalLM

    rows = [{"task": t, "input": f"{t}: {q}", "output": a if t == "predict" else r * (i + 1),
             "metadata": {"record_id": f"r{i}"}}
            for i, (q, a, r) in enumerate(FACTS[:3]) for t in ("predict", "explain")]
    data = encode_examples(tokenizer, [row_to_example(r) for r in rows], max_seq_len=256)
    model = AutoModelForCausalLM.from_pretrained(tiny, local_files_only=True)
    parts = [data.samples[:1], data.samples[1:]]  # unequal micro-batches
    with torch.no_grad():
        def sums_of(samples):
            b = collate(samples, tokenizer.pad_token_id)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            return b, multitask_loss(logits, b["labels"], b["task"], alpha=0.3,
                                     multitask=True)
        whole_batch, (whole, _) = sums_of(data.samples)
        micro = [sums_of(p) for p in parts]
    counts = sum(answer_counts(b["labels"], b["task"]) for b, _ in micro)
    assert counts.tolist() == answer_counts(whole_batch["labels"], whole_batch["task"]).tolist()
    for multitask in (True, False):
        shares = sum(step_loss(sums, counts, alpha=0.3, multitask=multitask).item()
                     for _, (_, sums) in micro)
        expected = whole.item() if multitask else multitask_loss(
            model(input_ids=whole_batch["input_ids"],
                  attention_mask=whole_batch["attention_mask"]).logits.detach(),
            whole_batch["labels"], whole_batch["task"], alpha=0.3, multitask=False)[0].item()
        assert shares == pytest.approx(expected, rel=1e-5)
        # the old way, a mean of the micro-batches' means, is not the step's loss
        means = sum(multitask_loss_of(sums, multitask) for _, (_, sums) in micro) / 2
        assert abs(means - expected) > 1e-3


def multitask_loss_of(sums, multitask: bool) -> float:
    if not multitask:
        return ((sums["ce_predict"] + sums["ce_explain"])
                / (sums["tok_predict"] + sums["tok_explain"])).item()
    return (0.3 * sums["ce_predict"] / sums["tok_predict"]
            + 0.7 * sums["ce_explain"] / sums["tok_explain"]).item()


def test_plain_template_is_saved_as_a_jinja_chat_template(tokenizer):
    """A model trained on the plain template gets it as its chat template, rendering what
    the trainer encoded, so the server can chat with it."""
    msgs = [{"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What do worker bees build?"},
            {"role": "assistant", "content": "Worker bees build the wax comb."},
            {"role": "tool", "content": "{\"kg\": 41}"}]
    template = tokenizer.chat_template
    try:
        tokenizer.chat_template = None
        ids, labels = encode_messages(tokenizer, msgs)  # the plain encoder
        tokenizer.chat_template = plain_chat_template()
        text = tokenizer.apply_chat_template(msgs, tokenize=False)
        bos, eos = tokenizer.bos_token or "", tokenizer.eos_token
        assert text == (bos + "### System:\nAnswer briefly.\n\n"
                        + "### Instruction:\nWhat do worker bees build?\n\n"
                        + PLAIN_TEMPLATE["assistant_prompt"]
                        + "Worker bees build the wax comb." + eos + "\n\n"
                        + "### Tool result:\n{\"kg\": 41}\n\n")
        assert tokenizer.decode(ids) == text
        prompt = tokenizer.apply_chat_template(msgs[:2], tokenize=False,
                                               add_generation_prompt=True)
        assert prompt.endswith("### Response:\n") and text.startswith(prompt)
        # training on the saved model again finds the same answer tokens
        ids2, labels2 = encode_messages(tokenizer, msgs)
        assert _answer(tokenizer, ids2, labels2) == _answer(tokenizer, ids, labels) == \
            "Worker bees build the wax comb." + eos
    finally:
        tokenizer.chat_template = template


def test_worker_env_parse_event_warmup_and_retries(settings, monkeypatch):
    from syllabus.services.runtime import Runtime as _Runtime

    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "NATS_TOKEN", "NATS_CREDS",
                 "HF_TOKEN", "GITHUB_TOKEN", "SYLLABUS_STORE__SECRET_KEY", "TORCH_API_KEY"):
        monkeypatch.setenv(name, "s3cr3t")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("NCCL_DEBUG", "INFO")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    env = worker_env()
    assert "s3cr3t" not in env.values()
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and env["NCCL_DEBUG"] == "INFO"
    assert env["LC_ALL"] == "C.UTF-8" and env["PATH"] and env["TOKENIZERS_PARALLELISM"]

    from syllabus.services.trainer._config import MARKER

    assert parse_event(MARKER + '{"event": "done", "path": "/x"}') == {"event": "done",
                                                                       "path": "/x"}
    assert parse_event("a row's text: " + MARKER + '{"event": "done", "path": "/"}') is None

    hp = hyperparameters({}, {"warmup_steps": 5})  # no max_steps: known in the worker only
    assert hp.warmup(6) == 5
    with pytest.raises(ValueError, match=r"warmup_steps \(5\) must be below the job's 5 "):
        hp.warmup(5)
    assert hyperparameters({}, {"warmup_ratio": 0.5}).warmup(10) == 5

    settings.trainer.crash_retries = settings.trainer.max_deliver
    with pytest.raises(ValueError, match=r"crash_retries \(5\) must be below"):
        build_router(_Runtime.create(settings))


async def test_bad_data_sets_and_requests_fail_with_the_reason(settings, tmp_path, tiny):
    """Through the real service (nats-server, the store), before any process starts:
    malformed rows, a bad manifest, a reused job id, a checkpoint from another world size,
    an unsafe key in the base model's listing."""
    from syllabus.services.trainer import model_prefix
    from syllabus.services.trainer._service import _download_base

    settings = _trainer_settings(settings, tmp_path)
    rt = Runtime.create(settings)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    store: LocalStore = rt.store
    good = (json.dumps({"messages": [{"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "a"}]}) + "\n").encode()

    def dataset(name: str, train: bytes, manifest: bytes = b"{}") -> str:
        store.put(f"datasets/{name}/v1/manifest.json", manifest)
        store.put(f"datasets/{name}/v1/train.jsonl", train)
        return f"{name}/v1"

    try:
        base = await rt.to_thread(upload_base_model, store, tiny)
        cases = {
            "list-item": (dataset("a", good + b'{"conversations": [1]}\n'),
                          r"train\.jsonl:2: conversations\[0\] must be an object"),
            "null": (dataset("b", b'{"conversations": null}\n'),
                     r"train\.jsonl:1: 'conversations' must be a list, got NoneType"),
            "utf8": (dataset("c", good + good + b'{"messages": "\xff\xfe"}\n'),
                     r"train\.jsonl:3: not UTF-8 text"),
            "tool-calls": (dataset("d", b'{"messages": [{"role": "user", "content": "q"}, '
                                        b'{"role": "assistant", "tool_calls": [7]}]}\n'),
                           r"train\.jsonl:1: malformed row \(AttributeError"),
            "manifest": (dataset("e", good, b"[1, 2]"),
                         r"manifest\.json must be a JSON object, got list"),
        }
        for name, (ds, _) in cases.items():
            await rt.bus.publish(TrainingRequested(job_id=f"bad-{name}", dataset=ds,
                                                   base_model=base, method="full", gpus=0))
        for name, (_, reason) in cases.items():
            outcome, _ = await _outcome(rt, f"bad-{name}", timeout=60)
            assert isinstance(outcome, TrainingFailed), name
            assert re.search(reason, outcome.reason), (name, outcome.reason)

        # a job id already used for another request: refused, nothing resumed or reported
        ok = dataset("ok", good)
        used = model_id_for("reused", ok, "full")
        store.put(model_prefix(used) + "request.json", TrainingRequested(
            job_id="reused", dataset=ok, base_model=base, method="full", gpus=0,
            hyperparameters={"max_steps": 3}).model_dump_json().encode())
        await rt.bus.publish(TrainingRequested(job_id="reused", dataset=ok, base_model=base,
                                               method="full", gpus=0,
                                               hyperparameters={"max_steps": 4}))
        outcome, _ = await _outcome(rt, "reused", timeout=60)
        assert isinstance(outcome, TrainingFailed)
        assert "job id 'reused'" in outcome.reason and "max_steps" in outcome.reason

        # a checkpoint saved by 3 processes; this job runs 2
        moved = model_id_for("moved", ok, "full")
        store.put(f"models/{moved}/checkpoints/step-2/trainer_state.json",
                  json.dumps({"step": 2, "world_size": 3}).encode())
        await rt.bus.publish(TrainingRequested(job_id="moved", dataset=ok, base_model=base,
                                               method="full", gpus=0))
        outcome, _ = await _outcome(rt, "moved", timeout=60)
        assert isinstance(outcome, TrainingFailed)
        assert "saved by 3 process(es) and this job runs 2" in outcome.reason

        # what an S3 listing could hold: keys that would land outside the job folder
        class Listing(LocalStore):
            extra = ""

            def list(self, prefix=""):
                yield from super().list(prefix)
                yield self.extra

        hostile = Listing(store.root)
        for extra in (f"{base}/etc/cron.d/x", f"{base}../../escape", "elsewhere/config.json"):
            hostile.extra = extra
            target = tmp_path / "hostile" / "base"
            target.mkdir(parents=True, exist_ok=True)
            with pytest.raises(ValueError, match="base model"):
                _download_base(_with_store(rt, hostile), base, target)
            assert not list((tmp_path / "hostile").rglob("x")) and \
                not (tmp_path / "escape").exists()
        # a complete download renames each file into place: no .tmp left
        _download_base(rt, base, target)
        assert (target / "config.json").is_file() and not list(target.rglob("*.tmp"))
    finally:
        await rt.close()


def _with_store(rt: Runtime, store):
    import copy

    other = copy.copy(rt)
    other.store = store
    return other


# --- the service, torchrun, the store --------------------------------------------------


async def _dataset(rt: Runtime) -> str:
    for rec in _records():
        await rt.bus.publish(rec, subject=RECORDS_ACCEPTED)
    result = await build(rt, DatasetRequested(collection="bees", format="step-by-step",
                                              eval_fraction=0.25,
                                              options={"semantic_threshold": None}))
    return f"{result.event.collection}/{result.event.version}"


async def _outcome(rt: Runtime, job: str, timeout: float = 240.0):
    progress: list[TrainingProgress] = []
    outcome = await follow_job(rt.bus, job, on_progress=progress.append, timeout=timeout)
    return outcome, progress


def _trainer_settings(settings, tmp_path):
    settings.datasets.augmenters = []
    settings.trainer.work_dir = tmp_path / "work"
    settings.trainer.hyperparameters = dict(HP)
    return settings


def _first_step_losses(store, dataset: str, tiny: Path, *, world: int, batch_size: int,
                       grad_accum: int) -> tuple[float, float]:
    """L(predict) and L(explain) of a job's first optimizer step, computed here with the
    base model on the micro-batches every process gets."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from syllabus.services.trainer._worker import micro_batches

    tok = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        path.write_bytes(store.get(f"datasets/{dataset}/train.jsonl"))
        data = encode_examples(tok, load_examples(path), max_seq_len=HP["max_seq_len"])
    model = AutoModelForCausalLM.from_pretrained(tiny, local_files_only=True)
    totals = {"ce_predict": 0.0, "tok_predict": 0.0, "ce_explain": 0.0, "tok_explain": 0.0}
    with torch.no_grad():
        for rank in range(world):
            mbs = micro_batches(len(data.samples), epoch=0, seed=0, rank=rank, world=world,
                                batch_size=batch_size, grad_accum=grad_accum)[:grad_accum]
            for mb in mbs:
                b = collate([data.samples[i] for i in mb], tok.pad_token_id)
                logits = model(input_ids=b["input_ids"],
                               attention_mask=b["attention_mask"]).logits
                _, sums = multitask_loss(logits, b["labels"], b["task"], alpha=0.5,
                                         multitask=True)
                for k in totals:
                    totals[k] += sums[k].item()
    return (totals["ce_predict"] / totals["tok_predict"],
            totals["ce_explain"] / totals["tok_explain"])


@pytest.mark.slow
async def test_service_trains_checkpoints_and_resumes(settings, tmp_path, tiny):
    from transformers import AutoModelForCausalLM

    settings = _trainer_settings(settings, tmp_path)
    rt = Runtime.create(settings)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    try:
        dataset = await _dataset(rt)
        base = await rt.to_thread(upload_base_model, rt.store, tiny)

        # invalid requests fail up front, with the reason
        bad = {"unknown": TrainingRequested(job_id="bad-1", dataset="bees/0000000000000000",
                                            base_model=base, method="full", gpus=0),
               "missing": TrainingRequested(job_id="bad-2", dataset=dataset,
                                            base_model="base-models/nothing/", gpus=0),
               "local": TrainingRequested(job_id="bad-3", dataset=dataset,
                                          base_model=str(tiny), gpus=0),
               "hp": TrainingRequested(job_id="bad-4", dataset=dataset, base_model=base,
                                       gpus=0, hyperparameters={"learning_rate": 0}),
               "gpus": TrainingRequested(job_id="bad-5", dataset=dataset, base_model=base,
                                         gpus=2)}
        for req in bad.values():
            await rt.bus.publish(req)
        reasons = {}
        for name, req in bad.items():
            outcome, _ = await _outcome(rt, req.job_id, timeout=60)
            assert isinstance(outcome, TrainingFailed), name
            reasons[name] = outcome.reason
        assert "unknown data set 'bees/0000000000000000'" in reasons["unknown"]
        assert "base model 'base-models/nothing/' is missing" in reasons["missing"]
        assert "outside trainer.base_model_roots" in reasons["local"]
        assert "learning_rate" in reasons["hp"]
        assert "asks for 2 GPU(s)" in reasons["gpus"]

        # a real job: torchrun, two gloo processes, LoRA with dropout, two micro-batches
        # per step, a non-default alpha
        job = TrainingRequested(job_id="job-a", dataset=dataset, base_model=base,
                                method="lora", gpus=0,
                                hyperparameters={"alpha": 0.9, "grad_accum": 2,
                                                 "lora_dropout": 0.1, "learning_rate": 1e-2})
        await rt.bus.publish(job)
        done, progress = await _outcome(rt, "job-a")
        assert isinstance(done, TrainingCompleted), done
        model_id = model_id_for("job-a", dataset, "lora")
        # the first logged loss (the base model: LoRA starts as a no-op) is the step's
        # 0.9 * L(predict) + 0.1 * L(explain), each the mean over the answer tokens of all
        # four micro-batches of both processes
        first = _first_step_losses(rt.store, dataset, tiny, world=2, batch_size=2,
                                   grad_accum=2)
        # (the random tiny model's two losses differ by ~2e-3; the worker's loss matches
        # this one to ~1e-8)
        assert progress[0].loss == pytest.approx(0.9 * first[0] + 0.1 * first[1], rel=1e-6)
        assert abs(progress[0].loss - (first[0] + first[1]) / 2) > 2e-4
        assert done.model_id == model_id and done.store_prefix == f"models/{model_id}/"
        assert [p.step for p in progress] == [1, 2, 3, 4, 5, 6]
        assert all(p.total_steps == 6 and p.tokens_per_second > 0 for p in progress)
        assert [p.step for p in progress if p.eval_loss is not None] == [3, 6]
        losses = [p.loss for p in progress]
        assert losses[-1] < losses[0] - 0.2, losses  # the loss falls
        m = done.metrics
        assert m["world_size"] == 2 and m["steps"] == 6 and m["resumed_from"] == 0
        assert m["train_loss_last"] < m["train_loss_first"]
        assert math.isfinite(m["eval_loss"]) and m["eval_loss_predict"] > 0

        store: LocalStore = rt.store
        prefix = done.store_prefix
        record = json.loads(store.get(prefix + "training.json"))
        ranks = {r["rank"]: r for r in record["ranks"]}
        assert set(ranks) == {0, 1} and all(r["samples"] > 0 and r["tokens"] > 0
                                            for r in ranks.values())  # both ranks trained
        ckpt = f"{prefix}checkpoints/step-3/"
        assert {k[len(ckpt):] for k in store.list(ckpt)} == {
            "model.safetensors", "optimizer.pt", "scheduler.pt", "rng-0.pt", "rng-1.pt",
            "trainer_state.json"}
        assert json.loads(store.get(ckpt + "trainer_state.json"))["step"] == 3
        card = store.get(prefix + "README.md").decode()
        manifest_key = f"datasets/{dataset}/manifest.json"
        assert dataset in card and manifest_key in card and record["manifest_sha256"] in card
        assert store.get(prefix + "dataset_manifest.json") == store.get(manifest_key)
        local = tmp_path / "downloaded"
        for key in store.list(prefix):
            if "/checkpoints/" not in key:
                (local / key[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
                (local / key[len(prefix):]).write_bytes(store.get(key))
        trained = AutoModelForCausalLM.from_pretrained(local, local_files_only=True)
        original = AutoModelForCausalLM.from_pretrained(tiny, local_files_only=True)
        assert any((a - b).abs().max() > 1e-4 for a, b in zip(
            trained.parameters(), original.parameters(), strict=True))
        assert (local / "tokenizer.json").is_file() and (local / "chat_template.jinja").exists()

        # a job stopped after its checkpoint at step 3 (the same request and settings, the
        # checkpoint in its own model folder): redelivered, it resumes at step 4 and lands
        # on the same losses as the run that never stopped (the RNG states restored: the
        # LoRA dropout masks are the same)
        model_b = model_id_for("job-b", dataset, "lora")
        for key in store.list(ckpt):
            store.put(key.replace(model_id, model_b, 1), store.get(key))
        await rt.bus.publish(job.model_copy(update={"job_id": "job-b"}))
        resumed, progress_b = await _outcome(rt, "job-b")
        assert isinstance(resumed, TrainingCompleted), resumed
        assert resumed.metrics["resumed_from"] == 3
        assert [p.step for p in progress_b] == [4, 5, 6]
        assert [p.loss for p in progress_b] == pytest.approx(losses[3:], rel=1e-4)
        assert resumed.metrics["eval_loss"] == pytest.approx(m["eval_loss"], rel=1e-4)

        # gradient checkpointing on, the request otherwise the same: the worker's model
        # recomputes every decoder layer in the backward pass (job-a's none), and the maths
        # is unchanged (the recompute replays the LoRA dropout masks): job-a's losses, step
        # by step, and its evaluation loss
        layers = json.loads((tiny / "config.json").read_text())["num_hidden_layers"]
        assert layers >= 2 and record["checkpointed_layers"] == 0
        await rt.bus.publish(job.model_copy(update={"job_id": "job-c", "hyperparameters": {
            **job.hyperparameters, "gradient_checkpointing": True}}))
        recomputed, progress_c = await _outcome(rt, "job-c")
        assert isinstance(recomputed, TrainingCompleted), recomputed
        record_c = json.loads(store.get(recomputed.store_prefix + "training.json"))
        assert record_c["hyperparameters"]["gradient_checkpointing"] is True
        assert record_c["checkpointed_layers"] == layers
        assert [p.step for p in progress_c] == [1, 2, 3, 4, 5, 6]
        assert [p.loss for p in progress_c] == pytest.approx(losses, rel=1e-6)
        assert recomputed.metrics["eval_loss"] == pytest.approx(m["eval_loss"], rel=1e-6)

        # the same request again: the finished model is reported, nothing retrained
        await rt.bus._publish_raw(job.model_dump_json().encode(), TRAINING_REQUESTED,
                                  {"Nats-Msg-Id": "again"})
        for _ in range(100):
            done_msgs = [m for m in await replay(rt.bus, "syllabus.training.completed")
                         if TrainingCompleted.model_validate_json(m.data).job_id == "job-a"]
            infos = {i.config.durable_name: i
                     for i in await rt.bus.js.consumers_info("SYLLABUS")}
            if infos["trainer"].num_ack_pending == 0 and infos["trainer"].num_pending == 0:
                break
            await asyncio.sleep(0.2)
        assert len(done_msgs) == 1  # deduplicated: the completed event is the same
        assert not (tmp_path / "work" / model_id).exists()  # the job folder is cleaned up

        from syllabus.services.runtime import REGISTRY

        def sample(name: str, **labels: str) -> float:
            return REGISTRY.get_sample_value(name, labels) or 0.0

        assert sample("syllabus_training_step", model_id=model_id) == 6
        assert sample("syllabus_training_loss", model_id=model_id) == pytest.approx(losses[-1])
        assert sample("syllabus_training_checkpoints_total", model_id=model_id) == 1
        assert sample("syllabus_training_jobs_total", outcome="completed") >= 2
        assert sample("syllabus_training_jobs_total", outcome="invalid") >= 5
        assert sample("syllabus_training_jobs_total", outcome="already_done") >= 1
    finally:
        await rt.close()


@pytest.mark.slow
async def test_worker_crash_becomes_training_failed(settings, tmp_path, tiny):
    settings = _trainer_settings(settings, tmp_path)
    settings.trainer.hyperparameters["cpu_processes"] = 1
    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    rt = Runtime.create(settings)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    try:
        dataset = await _dataset(rt)
        base = await rt.to_thread(upload_base_model, rt.store, broken)
        await rt.bus.publish(TrainingRequested(job_id="crash", dataset=dataset,
                                               base_model=base, method="lora", gpus=0))
        failed, progress = await _outcome(rt, "crash")
        assert isinstance(failed, TrainingFailed) and not progress
        assert "safetensors" in failed.reason.lower() or "header" in failed.reason.lower()
        assert "Traceback" in failed.log_tail and "_worker.py" in failed.log_tail
    finally:
        await rt.close()


def test_cli_train_publishes_the_request(settings, nats_server, tmp_path, tiny):
    env = {"SYLLABUS_NATS__URL": nats_server.url, "SYLLABUS_STORE__KIND": "local",
           "SYLLABUS_STORE__PATH": str(tmp_path / "store")}
    runner = CliRunner()
    result = runner.invoke(train_command, [
        "--dataset", "bees/0123456789abcdef", "--base-model", str(tiny), "--method", "lora",
        "--max-steps", "5", "--lr", "1e-4", "--set", "lora_r=4", "--set", "lora_adapter=keep",
        "--job-id", "cli-job", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model_id"] == model_id_for("cli-job",
                                                                 "bees/0123456789abcdef", "lora")

    async def read() -> TrainingRequested:
        rt = Runtime.create(settings)
        await rt.bus.start()
        try:
            msgs = await replay(rt.bus, TRAINING_REQUESTED)
        finally:
            await rt.close()
        return TrainingRequested.model_validate_json(msgs[-1].data)

    req = asyncio.run(read())
    assert req.job_id == "cli-job" and req.method == "lora"
    assert req.hyperparameters == {"max_steps": 5, "learning_rate": 1e-4, "lora_r": 4,
                                   "lora_adapter": "keep"}
    assert req.base_model.startswith("base-models/model-")
    store = LocalStore(tmp_path / "store")
    assert store.exists(req.base_model + "config.json")
    assert store.exists(req.base_model + "model.safetensors")

    bad = runner.invoke(train_command, ["--dataset", "bees/0123456789abcdef", "--base-model",
                                        "x/", "--set", "lora_rank=4"], env=env)
    assert bad.exit_code == 2 and "lora_rank" in bad.output


def test_long_prompts_lose_their_start_not_the_answer(tokenizer):
    long_q = "Tell me about bees. " * 60 + "What do worker bees build?"
    row = row_to_example({"messages": [{"role": "user", "content": long_q},
                                       {"role": "assistant", "content": "The wax comb."}]})
    data = encode_examples(tokenizer, [row], max_seq_len=40)
    (seq,), = data.samples
    assert data.truncated == 1 and not data.skipped and len(seq.input_ids) == 40
    assert seq.input_ids[0] == tokenizer.bos_token_id
    assert _answer(tokenizer, seq.input_ids, seq.labels) == "The wax comb.<|im_end|>"
    assert "worker bees build?" in tokenizer.decode(seq.input_ids)


@pytest.mark.slow
def test_syllabus_run_train_serve(tmp_path):
    """`syllabus run --train --serve`: the pipeline, a trained tiny model, and that model
    answering through the OpenAI-compatible endpoint, with its evaluation scores."""
    import os
    import subprocess
    import sys

    from .conftest import EXAMPLES

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("swarming.md", "preparing-for-winter.md", "apiary-calendar.txt"):
        shutil.copy(EXAMPLES / name, docs / name)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
    env["SYLLABUS_TRAINER__WORK_DIR"] = str(tmp_path / "work")
    proc = subprocess.run([str(Path(sys.executable).parent / "syllabus"), "run", str(docs),
                           "--out", str(out), "-c", "bees", "--train", "--base-model", "tiny",
                           "--serve", "--json"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    # the extractive records have rationales: --train fits distilling step-by-step
    assert report["dataset"]["format"] == "step-by-step", report["format_reason"]
    assert "records have a rationale" in report["format_reason"]
    training = report["training"]
    assert training["outcome"] == "completed", training
    assert training["processes"] == 2 and training["steps"] >= 3
    assert training["last_loss"] < training["first_loss"]
    assert training["tokens_per_second"] > 0
    assert training["store_prefix"] == f"models/{training['model_id']}/"
    assert training["dataset"] == f"bees/{report['dataset']['version']}"
    model = out / "store" / training["store_prefix"]
    assert {"config.json", "model.safetensors", "README.md", "training.json"} <= \
        {p.name for p in model.iterdir()}
    curve = training["loss_curve"]
    assert curve[0][0] == 1 and curve[-1][0] == training["steps"]
    assert (out / "tiny-model" / "tokenizer.json").is_file()
    serving = report["serving"]
    assert serving["status"] == "deployed", serving
    assert serving["model_id"] == training["model_id"]
    assert {"qa.exact_match", "qa.token_f1", "sycophancy.disagree_rate_with_opinion",
            "sycophancy.disagree_rate_without_opinion"} <= set(serving["eval_scores"])
    assert serving["eval_details"]["qa"]["items"] > 0
    # compared with the untrained tiny model it started from, on the same questions
    base = serving["eval_details"]["base"]
    assert base["model"] == training["base_model"], base
    assert serving["eval_scores"]["qa.token_f1"] >= base["scores"]["qa.token_f1"]
    assert base["details"]["qa"]["items"] == serving["eval_details"]["qa"]["items"]
    assert serving["endpoint"].endswith("/v1") and serving["question"]
    assert isinstance(serving["answer"], str) and serving["usage"]["completion_tokens"] > 0


@pytest.mark.slow
def test_a_killed_trainer_job_resumes_on_redelivery(settings, nats_server, tmp_path, tiny):
    """A trainer replica dies mid-job (the service and its torchrun, SIGKILL): the request
    is redelivered to the next replica, which resumes from the last checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from syllabus.services.runtime import free_port

    settings.datasets.augmenters = []

    async def prepare() -> tuple[str, str]:
        rt = Runtime.create(settings)
        await rt.bus.start()
        try:
            dataset = await _dataset(rt)
            base = await rt.to_thread(upload_base_model, rt.store, tiny)
            await rt.bus.publish(TrainingRequested(job_id="killed", dataset=dataset,
                                                   base_model=base, method="lora", gpus=0))
            return dataset, base
        finally:
            await rt.close()

    dataset, _ = asyncio.run(prepare())
    model_id = model_id_for("killed", dataset, "lora")
    hp = {**HP, "max_steps": 60, "checkpoint_every": 4, "eval_every": 0, "log_every": 4,
          "learning_rate": 1e-2}
    syllabus = str(Path(sys.executable).parent / "syllabus")

    def serve(work: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
        env.update({"SYLLABUS_NATS__URL": nats_server.url, "SYLLABUS_STORE__KIND": "local",
                    "SYLLABUS_STORE__PATH": str(tmp_path / "store"),
                    "SYLLABUS_TRAINER__WORK_DIR": str(tmp_path / work),
                    "SYLLABUS_TRAINER__ACK_WAIT": "2",
                    "SYLLABUS_TRAINER__HYPERPARAMETERS": json.dumps(hp)})
        return subprocess.Popen([syllabus, "serve", "trainer", "--port", str(free_port())],
                                env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    first = serve("work-1")
    ckpts = tmp_path / "store" / "models" / model_id / "checkpoints"
    try:
        deadline = time.monotonic() + 180
        while not any(ckpts.glob("step-*/trainer_state.json")):
            assert first.poll() is None, first.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.05)
        # the replica dies: the service and its torchrun process group
        out = subprocess.run(["ps", "-ww", "-eo", "pid,pgid,args"], capture_output=True,
                             text=True).stdout
        groups = {int(line.split()[1]) for line in out.splitlines()[1:]
                  if str(tmp_path / "work-1") in line and "torch.distributed.run" in line}
        assert groups, "the trainer's torchrun was not found"
        first.send_signal(signal.SIGKILL)
        for pgid in groups:
            os.killpg(pgid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    saved = sorted(int(p.parent.name[5:]) for p in ckpts.glob("step-*/trainer_state.json"))
    assert saved and saved[-1] < 60
    assert not (tmp_path / "store" / "models" / model_id / "training.json").exists()

    second = serve("work-2")
    try:
        # the CLI follows the job to its end (the same request again is a duplicate: the
        # stream keeps one, and the CLI just waits)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
        env.update({"SYLLABUS_NATS__URL": nats_server.url, "SYLLABUS_STORE__KIND": "local",
                    "SYLLABUS_STORE__PATH": str(tmp_path / "store"),
                    "COLUMNS": "200"})  # the bar's columns on one line, none cropped
        cli = subprocess.run([syllabus, "train", "--dataset", dataset, "--base-model",
                              str(tiny), "--method", "lora", "--job-id", "killed", "--wait",
                              "--timeout", "240", "--json"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stderr[-2000:]
        out = json.loads(cli.stdout)
        assert out["outcome"] == "completed" and out["model_id"] == model_id

        async def wait():
            rt = Runtime.create(settings)
            await rt.bus.start()
            try:
                return await _outcome(rt, "killed", timeout=240)
            finally:
                await rt.close()

        done, progress = asyncio.run(wait())
    finally:
        second.terminate()
        second.wait(30)
    assert isinstance(done, TrainingCompleted), done
    assert done.metrics["resumed_from"] >= saved[-1] and done.metrics["steps"] == 60
    # the progress bar (stderr is no terminal: rich prints its final state once): the step
    # counter, the elapsed time and the last progress event's loss, evaluation loss (the
    # last step evaluates) and tokens/s, as the bar renders them
    last = progress[-1]
    assert last.step == 60 and last.eval_loss is not None and last.tokens_per_second > 0
    tail = (f"loss {last.loss:.4f}, eval {last.eval_loss:.4f}, "
            f"{last.tokens_per_second:,.0f} tok/s")
    bars = re.findall(r"^training\s+\S+ (\d+)/(\d+) \d+:\d\d:\d\d (.*?)\s*$", cli.stderr,
                      re.M)
    assert bars == [("60", "60", tail)], cli.stderr[-2000:]
    record = json.loads((tmp_path / "store" / done.store_prefix / "training.json").read_text())
    resumed = [s for s, _ in record["history"]]
    assert resumed[-1] == 60
    # the second replica's progress starts right after the checkpoint it resumed from
    steps_b = [p.step for p in progress if p.step > done.metrics["resumed_from"]]
    assert steps_b[0] == done.metrics["resumed_from"] + 1
    assert (tmp_path / "store" / done.store_prefix / "model.safetensors").is_file()


@pytest.mark.slow
async def test_fsdp_lora_keeps_the_adapter_and_merges(settings, tmp_path, tiny, s3_store):
    """FSDP + LoRA with the adapter kept, on a real S3 server (rclone) as the store."""
    from transformers import AutoModelForCausalLM

    settings = _trainer_settings(settings, tmp_path)
    rt = Runtime.create(settings, store=s3_store)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    try:
        dataset = await _dataset(rt)
        base = await rt.to_thread(upload_base_model, rt.store, tiny)
        await rt.bus.publish(TrainingRequested(
            job_id="fsdp-lora", dataset=dataset, base_model=base, method="lora", gpus=0,
            hyperparameters={"strategy": "fsdp", "lora_adapter": "keep", "lora_r": 4,
                             "max_steps": 2, "checkpoint_every": 1, "eval_every": 0}))
        done, progress = await _outcome(rt, "fsdp-lora")
        assert isinstance(done, TrainingCompleted), done
        assert [p.step for p in progress] == [1, 2] and done.metrics["world_size"] == 2
        assert 0 < done.metrics["trainable_parameters"] < done.metrics["parameters"] / 2
        store = rt.store
        prefix = done.store_prefix
        names = {k[len(prefix):] for k in store.list(prefix)}
        assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                "model.safetensors", "config.json", "README.md", "training.json"} <= names
        assert {n for n in names if n.startswith("checkpoints/")} == {
            f"checkpoints/step-1/{f}" for f in ("model.safetensors", "optimizer.pt",
                                                "scheduler.pt", "rng-0.pt", "rng-1.pt",
                                                "trainer_state.json")}
        local = tmp_path / "model"
        for name in names:
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            (local / name).write_bytes(store.get(prefix + name))
        merged = AutoModelForCausalLM.from_pretrained(local, local_files_only=True)
        original = AutoModelForCausalLM.from_pretrained(tiny, local_files_only=True)
        assert not any("lora" in n for n, _ in merged.named_parameters())  # merged in
        assert any((a - b).abs().max() > 1e-6 for a, b in zip(
            merged.parameters(), original.parameters(), strict=True))
        assert "LoRA r=4" in store.get(prefix + "README.md").decode()

        # the replica's status endpoint (behind the bearer token)
        import httpx

        from syllabus.services.runtime import build_http_app
        from syllabus.services.trainer import http_routes

        app = build_http_app(service="trainer", ready=rt.ready, routes=http_routes(rt),
                             token="t0ken")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://trainer") as client:
            assert (await client.get("/v1/training/status")).status_code == 401
            reply = await client.get("/v1/training/status",
                                     headers={"Authorization": "Bearer t0ken"})
        body = reply.json()
        assert body["current"] is None and body["last"]["outcome"] == "completed"
        assert body["last"]["model_id"] == done.model_id
    finally:
        await rt.close()


@pytest.mark.slow
async def test_two_nodes_on_localhost_and_a_node_that_never_joins(settings, tmp_path, tiny):
    """``nodes=2``: the service runs node 0 only. With nobody starting node 1 the job fails
    after ``trainer.rendezvous_timeout`` with a TrainingFailed that says so; with node 1
    started here (a second torchrun, the command the service logs) the job trains on both."""
    import subprocess

    from syllabus.services.runtime import free_port
    from syllabus.services.trainer import other_node_commands

    settings = _trainer_settings(settings, tmp_path)
    settings.trainer.hyperparameters.update({"cpu_processes": 1, "max_steps": 2,
                                             "checkpoint_every": 0, "eval_every": 0})
    settings.trainer.master_addr = "127.0.0.1"
    settings.trainer.master_port = free_port()
    settings.trainer.rendezvous_timeout = 3
    rt = Runtime.create(settings)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    node1 = None
    try:
        dataset = await _dataset(rt)
        base = await rt.to_thread(upload_base_model, rt.store, tiny)
        await rt.bus.publish(TrainingRequested(job_id="alone", dataset=dataset,
                                               base_model=base, method="full", gpus=0,
                                               nodes=2))
        failed, _ = await _outcome(rt, "alone", timeout=120)
        assert isinstance(failed, TrainingFailed), failed
        assert "the other 1 node(s) did not join the rendezvous at 127.0.0.1:" in failed.reason
        assert "within 3 s" in failed.reason

        settings.trainer.rendezvous_timeout = 120
        model_id = model_id_for("pair", dataset, "full")
        spec = (tmp_path / "work" / model_id / "spec.json").resolve()
        await rt.bus.publish(TrainingRequested(job_id="pair", dataset=dataset,
                                               base_model=base, method="full", gpus=0,
                                               nodes=2))
        for _ in range(600):
            if spec.is_file():
                break
            await asyncio.sleep(0.05)
        (cmd,) = other_node_commands(spec, nproc=1, nnodes=2, master_addr="127.0.0.1",
                                     master_port=settings.trainer.master_port,
                                     rendezvous_timeout=120)
        node1 = subprocess.Popen(cmd, shell=True, cwd=spec.parent, env=worker_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        done, progress = await _outcome(rt, "pair", timeout=180)
        assert isinstance(done, TrainingCompleted), done
        assert done.metrics["world_size"] == 2 and [p.step for p in progress] == [1, 2]
        record = json.loads(rt.store.get(done.store_prefix + "training.json"))
        assert {r["rank"] for r in record["ranks"] if r["samples"] > 0} == {0, 1}
        assert await asyncio.to_thread(node1.wait, 60) == 0
    finally:
        if node1 is not None and node1.poll() is None:
            node1.kill()
        await rt.close()
