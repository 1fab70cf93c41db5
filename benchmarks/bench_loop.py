"""The closed loop, measured: does a model trained on Syllabus's data answer held-out
questions about the documents better than the base model it started from?

    python benchmarks/bench_loop.py [--quick] [--seeds N] [--work DIR] [--json PATH]

1. **Held-out questions.** ``examples/bees-heldout-qa.jsonl``: 48 questions about
   ``examples/bees`` with short reference answers, written by hand from the documents (not
   by the pipeline). Training rows whose question is one of them (after SQuAD's
   normalisation) are dropped before training and counted (``decontaminated``).
2. **Data sets.** ``syllabus run examples/bees --teacher extractive`` and
   ``--teacher local`` (Gemma 3 270M through llama.cpp), the real CLI in a subprocess, one
   work folder each; their ``dataset/train.jsonl`` is what is trained on. ``--quick``
   gives the local teacher one of the eight documents (its run is the slowest part)
   and trains on 16 rows of each data set (a fixed random sample).
3. **Training.** Gemma 3 270M, converted from the package's GGUF once (the trainer's
   ``--base-model gemma3-270m`` conversion), fine-tuned with LoRA by the trainer's own
   worker under a real ``torchrun`` (gloo, CPU), with ``BASE_MODEL_HYPERPARAMETERS``
   (``syllabus run --train --base-model``'s defaults) and the seed of the round.
4. **Contenders**, every one asked the same way: the question as one user turn in the
   prompt format the trainer trains on (``### Instruction: ... ### Response:``), greedy,
   at most ``--max-tokens`` tokens, the answer cut at the next ``###`` turn marker:
   * ``base``: Gemma 3 270M as it comes (greedy, so the same in every seed);
   * ``extractive``: fine-tuned on the extractive teacher's data set;
   * ``local``: fine-tuned on the local teacher's data set;
   * ``bootstrap`` (with ``--bootstrap``): fine-tuned on the data set of ``syllabus run
     --teacher bootstrap`` (Humpback's M0 as the teacher: Gemma 3 270M fine-tuned on the
     extractive seed run, then asked for everything), on the local teacher's documents.
     Off by default: its run (a seed run, M0's training and conversion, then the M0 run)
     takes longer than the local teacher's.
5. **Metrics**, per contender, mean and spread (population standard deviation) over the
   seeds: SQuAD token F1 and exact match against the reference answers; a judge score
   (1-5) from the **local base model** (Gemma 3 270M through llama.cpp, the ``llm-judge``
   filter's prompt with the reference answer as the source; a 270M judge is weak, and the
   label says so); the Wei et al. addition-statement sycophancy rates (correct "Disagree"
   answers without and with the user's opinion, on the first ``--sycophancy-items``
   claims); training tokens/s and generation tokens/s.

``--json`` writes ``{"contenders": {"base": {"token_f1", "exact_match", ...}, "extractive":
{...}, "local": {...}[, "bootstrap": {...}]}, "seeds": n, ...}``; every metric there is the
mean over the seeds, with ``<metric>_std`` and ``per_seed`` next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELDOUT = ROOT / "examples" / "bees-heldout-qa.jsonl"
DOCS = ROOT / "examples" / "bees"
#: the local teacher's documents under --quick (its run is the slowest step): one, so that
#: --quick fits its 15 minutes; a data set under --quick's 16 rows is named in the log
QUICK_LOCAL_DOCS = ("swarming.md",)
METRICS = ("token_f1", "exact_match", "judge_score", "sycophancy_without_opinion",
           "sycophancy_with_opinion", "generation_tokens_per_s", "train_tokens_per_s")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- data sets ---------------------------------------------------------------------------


def build_dataset(teacher: str, docs: list[Path], work: Path,
                  timeout: float) -> dict[str, Any]:
    """``syllabus run DOCS --teacher TEACHER`` in a subprocess; its train.jsonl and the
    report's counts. A run folder that holds a data set already is reused."""
    from syllabus.contracts import sha256_hex

    # one folder per teacher and set of documents (a --quick run's is not a full one's)
    names = sorted(d.name for d in docs)
    out = work / f"data-{teacher}-{len(names)}-docs-{sha256_hex(chr(0).join(names))[:8]}"
    train = out / "dataset" / "train.jsonl"
    report_path = out / "report.json"
    if train.is_file() and report_path.is_file():
        log(f"{teacher}: reusing the data set in {out}")
        seconds = None
    else:
        shutil.rmtree(out, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
        cmd = [str(Path(sys.executable).parent / "syllabus"), "run", *map(str, docs),
               "--out", str(out), "--teacher", teacher, "--timeout", str(timeout)]
        log(f"{teacher}: {' '.join(cmd[1:])}")
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0 or not train.is_file():
            raise SystemExit(f"syllabus run --teacher {teacher} failed "
                             f"(exit {done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(report_path.read_text())
    rows = [json.loads(line) for line in train.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"syllabus run --teacher {teacher} built a data set with no rows: "
                         f"{report_path}")
    return {"teacher": teacher, "rows": rows, "seconds": seconds, "out": str(out),
            "documents": [d.name for d in docs], "report": report}


def _row_questions(row: dict[str, Any]) -> list[str]:
    msgs = row.get("messages") or []
    return [str(m.get("content") or "") for m in msgs if m.get("role") == "user"]


def decontaminate(rows: list[dict[str, Any]], questions: list[str]
                  ) -> tuple[list[dict[str, Any]], int]:
    """The rows none of whose user turns is (or contains) a held-out question, after
    SQuAD's normalisation; and how many were dropped."""
    from syllabus.services.evals import normalize_answer

    held = {normalize_answer(q) for q in questions}
    kept = [r for r in rows
            if not any(normalize_answer(u) in held or any(h and h in normalize_answer(u)
                                                            for h in held)
                       for u in _row_questions(r))]
    return kept, len(rows) - len(kept)


def data_ceilings(rows: list[dict[str, Any]], items: list[Any]) -> dict[str, float]:
    """What the training rows could give at best, as token F1 on the held-out set, before
    any model is trained: ``answer_ceiling_token_f1``, the best-matching answer in the data
    set for each question (a model that always recalled the right row); and
    ``nearest_question_token_f1``, the answer of the training question closest in tokens to
    the held-out one (a model that recalled by question). A model fine-tuned closed-book
    on these rows cannot be expected to do much better than the second."""
    from syllabus.services.evals import token_f1

    pairs = [(qs[-1], str(r["messages"][-1].get("content") or "")) for r in rows
             if (r.get("metadata") or {}).get("kind") != "anti_sycophancy"
             and (qs := _row_questions(r)) and r.get("messages")]
    if not pairs:
        return {"answer_ceiling_token_f1": 0.0, "nearest_question_token_f1": 0.0}
    best = nearest = 0.0
    for it in items:
        question = it.messages[-1].content
        best += max(token_f1(a, it.reference) for _, a in pairs)
        nearest += token_f1(max(pairs, key=lambda p: token_f1(p[0], question))[1],
                            it.reference)
    return {"answer_ceiling_token_f1": best / len(items),
            "nearest_question_token_f1": nearest / len(items)}


def anti_sycophancy_rows(rows: list[dict[str, Any]]) -> int:
    """The anti-sycophancy augmenter's rows (Wei et al.'s synthetic claims)."""
    return sum(1 for r in rows if (r.get("metadata") or {}).get("kind") == "anti_sycophancy")


# --- training ----------------------------------------------------------------------------


async def train(base: Path, train_file: Path, out: Path, seed: int,
                hp_overrides: dict[str, Any]) -> dict[str, Any]:
    """LoRA on ``base`` with the trainer's worker under torchrun, as the trainer service
    launches it; the merged model's folder and the worker's figures."""
    from syllabus.services.cli._run_train import BASE_MODEL_HYPERPARAMETERS
    from syllabus.services.trainer._config import Hyperparameters, JobSpec
    from syllabus.services.trainer._launch import run_worker, torchrun_command, worker_env

    hp = Hyperparameters(**{**BASE_MODEL_HYPERPARAMETERS, "checkpoint_every": 0,
                            "seed": seed, **hp_overrides})
    spec = JobSpec(job_id=f"bench-loop-{out.name}", model_id=out.name, method="lora",
                   base_model=base, train_file=train_file, eval_file=None,
                   dataset_format="openai", out_dir=out, hp=hp)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    last: dict[str, Any] = {}

    async def on_event(ev: dict[str, Any]) -> None:
        if ev.get("event") == "progress":
            last.update(ev)

    started = time.perf_counter()
    result = await run_worker(torchrun_command(spec_path, nproc=hp.cpu_processes), cwd=out,
                              env=worker_env(), on_event=on_event, label=f"[{out.name}] ")
    seconds = time.perf_counter() - started
    if result.returncode != 0 or not result.done:
        raise SystemExit(f"training {out.name} failed (exit {result.returncode}):\n"
                         + "\n".join(result.tail[-40:]))
    metrics = result.done.get("metrics") or {}
    return {"path": Path(result.done["path"]), "seconds": seconds,
            "tokens_per_s": float(metrics.get("tokens_per_second") or 0.0),
            "tokens": float(metrics.get("tokens") or 0.0),
            "train_loss_first": metrics.get("train_loss_first"),
            "train_loss_last": metrics.get("train_loss_last")}


# --- a model to ask ----------------------------------------------------------------------


class HFModel:
    """A transformers model as a ``Teacher`` for the evals: concurrent ``complete`` calls
    are gathered and generated as one left-padded batch (greedy). The chat is rendered
    with the trainer's plain prompt format (the model's chat template after training)."""

    kind = "transformers-bench"

    def __init__(self, folder: Path, label: str, *, batch: int = 16) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from syllabus.services.trainer._data import plain_chat_template

        self.model_name, self.batch, self.torch = label, batch, torch
        self.tok = AutoTokenizer.from_pretrained(folder)
        if not getattr(self.tok, "chat_template", None):
            self.tok.chat_template = plain_chat_template()
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.pending: list[tuple[str, int, asyncio.Future]] = []
        self.running = False
        self.generated = 0
        self.seconds = 0.0

    @property
    def model(self) -> str:
        return self.model_name

    async def complete(self, messages, *, params):
        text = self.tok.apply_chat_template([{"role": m.role, "content": m.content}
                                             for m in messages],
                                            tokenize=False, add_generation_prompt=True)
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((text, int(params.max_tokens or 32), fut))
        if not self.running:
            self.running = True
            self.drainer = asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        from syllabus.contracts import Completion

        batch: list[tuple[str, int, asyncio.Future]] = []
        try:
            await asyncio.sleep(0.05)  # let the rest of a gather queue up
            while self.pending:
                self.pending.sort(key=lambda p: len(p[0]))
                batch, self.pending = self.pending[:self.batch], self.pending[self.batch:]
                outs = await asyncio.to_thread(self._generate, [p[0] for p in batch],
                                               max(p[1] for p in batch))
                for (_, _, fut), (text, n) in zip(batch, outs, strict=True):
                    fut.set_result(Completion(text=text, model=self.model_name,
                                              completion_tokens=n))
        except BaseException as exc:
            for *_, fut in batch + self.pending:
                if not fut.done():
                    fut.set_exception(exc)
            self.pending = []
            raise
        finally:
            self.running = False

    def _generate(self, prompts: list[str], max_tokens: int) -> list[tuple[str, int]]:
        torch = self.torch
        enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.lm.generate(**enc, max_new_tokens=max_tokens, do_sample=False,
                                   pad_token_id=self.tok.pad_token_id)
        self.seconds += time.perf_counter() - started
        results = []
        for row in out[:, enc["input_ids"].shape[1]:]:
            ids = [int(t) for t in row if int(t) != self.tok.pad_token_id]
            if self.tok.eos_token_id in ids:
                ids = ids[:ids.index(self.tok.eos_token_id)]
            self.generated += len(ids)
            text = self.tok.decode(ids, skip_special_tokens=True)
            results.append((text.split("###", 1)[0].strip(), len(ids)))
        return results


# --- one contender -----------------------------------------------------------------------


async def judge_scores(judge: Any, examples: list[dict[str, Any]]) -> float | None:
    """The mean llm-judge score (1-5) of the answers, the reference answer as the source."""
    from syllabus.contracts import PluginRef, QARecord, TeacherRef
    from syllabus.plugins.filters.llm_judge import LLMJudge

    scores: list[float] = []
    for i, ex in enumerate(examples):
        record = QARecord(record_id=f"bench-loop-{i}", collection="bench-loop",
                          instruction=ex["question"],
                          response=ex["answer"] or "(no answer)",
                          technique=PluginRef(name="bench-loop"),
                          teacher=TeacherRef(kind="bench", model="contender"))
        decision = await LLMJudge().judge(record, context=f"The correct answer is: "
                                          f"{ex['reference']}", teacher=judge, options={})
        if decision.score is not None:
            scores.append(decision.score)
    return statistics.fmean(scores) if scores else None


async def evaluate(model: HFModel, items: list[Any], *, max_tokens: int, judge: Any,
                   judge_items: int, sycophancy_items: int) -> dict[str, Any]:
    from syllabus.services.evals import run_qa_eval, run_sycophancy_eval

    qa = await run_qa_eval(model, items, concurrency=len(items), max_tokens=max_tokens,
                           source=HELDOUT.name, examples=len(items))
    result: dict[str, Any] = {"token_f1": qa["token_f1"], "exact_match": qa["exact_match"],
                              "answers": qa["examples"]}
    if sycophancy_items:
        syc = await run_sycophancy_eval(model, limit=sycophancy_items,
                                        concurrency=2 * sycophancy_items, max_tokens=8)
        result["sycophancy_without_opinion"] = syc["disagree_rate_without_opinion"]
        result["sycophancy_with_opinion"] = syc["disagree_rate_with_opinion"]
        result["sycophancy_unparsed"] = (syc["without_opinion"]["unparsed"]
                                         + syc["with_opinion"]["unparsed"])
    result["generation_tokens_per_s"] = model.generated / model.seconds if model.seconds else 0.0
    if judge is not None and judge_items:
        step = max(1, len(qa["examples"]) // judge_items)  # spread over the documents
        result["judge_score"] = await judge_scores(judge,
                                                   qa["examples"][::step][:judge_items])
    return result


# --- the table ---------------------------------------------------------------------------


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in METRICS:
        vals = [r[key] for r in per_seed if r.get(key) is not None]
        if vals:
            out[key] = statistics.fmean(vals)
            out[f"{key}_std"] = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    out["per_seed"] = [{k: v for k, v in r.items() if k != "answers"} for r in per_seed]
    out["examples"] = per_seed[0].get("answers", [])[:5] if per_seed else []
    return out


def table(result: dict[str, Any]) -> str:
    cols = [("token F1", "token_f1", "{:.1%}"), ("exact match", "exact_match", "{:.1%}"),
            ("judge 1-5 (gemma3-270m base)", "judge_score", "{:.2f}"),
            ("disagree, no opinion", "sycophancy_without_opinion", "{:.0%}"),
            ("disagree, opinion", "sycophancy_with_opinion", "{:.0%}"),
            ("F1 ceiling / nearest Q", "ceilings", ""),
            ("train tok/s", "train_tokens_per_s", "{:.0f}"),
            ("gen tok/s", "generation_tokens_per_s", "{:.1f}")]
    head = ["contender", "rows", *(c[0] for c in cols)]
    lines = []
    for name, c in result["contenders"].items():
        cells = [name, str(c.get("train_rows", "-"))]
        for _, key, fmt in cols:
            if key == "ceilings":
                cells.append(f"{c['answer_ceiling_token_f1']:.1%} / "
                             f"{c['nearest_question_token_f1']:.1%}"
                             if "answer_ceiling_token_f1" in c else "-")
                continue
            if c.get(key) is None:
                cells.append("-")
                continue
            cell = fmt.format(c[key])
            if result["seeds"] > 1 and name != "base" and key in ("token_f1", "exact_match"):
                cell += " ± " + fmt.format(c.get(f"{key}_std", 0.0))
            cells.append(cell)
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]

    def fmt_row(r: list[str]) -> str:
        return "| " + " | ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) + " |"

    return "\n".join([fmt_row(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(fmt_row, lines)])


# --- main --------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from syllabus.plugins.teachers.local import LocalServer, resolve_model
    from syllabus.plugins.teachers.openai import OpenAITeacher
    from syllabus.services.cli._base_model import convert_gguf
    from syllabus.services.evals import parse_eval_rows

    started = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-loop-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    items = parse_eval_rows(HELDOUT.read_bytes(), source=str(HELDOUT))
    if len(items) < 40:
        raise SystemExit(f"{HELDOUT} has {len(items)} questions; the benchmark needs 40")
    questions = [it.messages[-1].content for it in items]

    name, gguf = resolve_model(None)
    base = work / "base-model"
    if not (base / "config.json").is_file():
        log(f"converting {gguf.name} to a transformers model in {base}")
        convert_gguf(gguf, base)

    all_docs = sorted(p for p in DOCS.iterdir() if p.is_file())
    local_docs = ([DOCS / n for n in QUICK_LOCAL_DOCS] if args.quick else all_docs)
    teachers = ("extractive", "local", *(("bootstrap",) if args.bootstrap else ()))
    data = {t: build_dataset(t, all_docs if t == "extractive" else local_docs, work,
                             args.run_timeout) for t in teachers}
    train_files: dict[str, Path] = {}
    for teacher, d in data.items():
        rows, dropped = decontaminate(d["rows"], questions)
        if args.max_rows and len(rows) > args.max_rows:  # a fixed sample, every kind in it
            rows = random.Random(0).sample(rows, args.max_rows)
        elif args.max_rows and len(rows) < args.max_rows:
            log(f"warning: the {teacher} data set has {len(rows)} training rows, fewer than "
                f"the {args.max_rows} the other contenders train on")
        d["decontaminated"], d["train_rows"] = dropped, len(rows)
        d["anti_sycophancy_rows"] = anti_sycophancy_rows(rows)
        d["ceilings"] = data_ceilings(rows, items)
        path = work / f"train-{teacher}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        train_files[teacher] = path
        log(f"{teacher}: {len(rows)} training rows ({dropped} dropped as held-out "
            f"questions, {d['anti_sycophancy_rows']} anti-sycophancy)")

    hp = {"epochs": args.epochs} if args.epochs else {}
    per_seed: dict[str, list[dict[str, Any]]] = {"base": [], **{t: [] for t in teachers}}
    judge_srv = judge = None
    try:
        if args.judge_items:
            judge_srv = LocalServer(gguf, name=name, n_ctx=4096,
                                    threads=len(os.sched_getaffinity(0)), chat_format=None,
                                    log_dir=work, start_timeout=180).start()
            judge = OpenAITeacher(model=name, url=judge_srv.url, base_model=True, timeout=600)
        ask = {"max_tokens": args.max_tokens, "judge": judge, "judge_items": args.judge_items,
               "sycophancy_items": args.sycophancy_items}
        log("base: evaluating")
        base_result = await evaluate(HFModel(base, "gemma3-270m base"), items, **ask)
        per_seed["base"] = [base_result] * args.seeds  # greedy: the same in every seed
        for seed in range(args.seeds):
            for teacher in teachers:
                folder = work / f"model-{teacher}-seed{seed}"
                log(f"{teacher} seed {seed}: training on {data[teacher]['train_rows']} rows")
                trained = await train(base, train_files[teacher], folder, seed, hp)
                log(f"{teacher} seed {seed}: {trained['seconds']:.0f} s, "
                    f"{trained['tokens_per_s']:.0f} tokens/s; evaluating")
                r = await evaluate(HFModel(trained["path"], f"gemma3-270m+{teacher}"), items,
                                   **ask)
                r.update(seed=seed, train_tokens_per_s=trained["tokens_per_s"],
                         train_seconds=trained["seconds"],
                         train_loss_first=trained["train_loss_first"],
                         train_loss_last=trained["train_loss_last"])
                per_seed[teacher].append(r)
                log(f"{teacher} seed {seed}: token F1 {r['token_f1']:.1%}, "
                    f"EM {r['exact_match']:.1%}")
                if not args.keep_models:
                    shutil.rmtree(folder, ignore_errors=True)
    finally:
        if judge is not None:
            await judge.aclose()
        if judge_srv is not None:
            judge_srv.stop()

    contenders: dict[str, Any] = {}
    for name_, runs in per_seed.items():
        c = summarise(runs)
        if name_ != "base":
            d = data[name_]
            c.update(train_rows=d["train_rows"], decontaminated=d["decontaminated"],
                     anti_sycophancy_rows=d["anti_sycophancy_rows"],
                     dataset_seconds=d["seconds"], documents=d["documents"],
                     **d["ceilings"])
        contenders[name_] = c
    return {"benchmark": "bench_loop", "seeds": args.seeds, "quick": args.quick,
            "questions": len(items), "heldout": str(HELDOUT.relative_to(ROOT)),
            "base_model": name, "judge": "gemma3-270m base (llama.cpp), llm-judge prompt"
            if args.judge_items else None, "judge_items": args.judge_items,
            "sycophancy_items": args.sycophancy_items, "max_tokens": args.max_tokens,
            "hyperparameters": hp or "BASE_MODEL_HYPERPARAMETERS",
            "seconds": time.perf_counter() - started, "contenders": contenders}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="the local teacher on 2 documents, 16 training rows per data set, 6 "
                         "judged answers, 10 claims")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bootstrap", action="store_true",
                    help="a fourth contender: trained on syllabus run --teacher bootstrap's "
                         "data set (M0 as the teacher)")
    ap.add_argument("--work", default=None,
                    help="work folder (default: a new temporary one); data sets already "
                         "built there are reused")
    ap.add_argument("--epochs", type=float, default=None,
                    help="training epochs (default: BASE_MODEL_HYPERPARAMETERS')")
    ap.add_argument("--max-rows", type=int, default=0,
                    help="train on at most this many rows of each data set (0: all)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--judge-items", type=int, default=None,
                    help="answers per contender and seed the judge scores (0: no judge)")
    ap.add_argument("--sycophancy-items", type=int, default=None,
                    help="addition claims asked per model (each twice)")
    ap.add_argument("--run-timeout", type=float, default=3600)
    ap.add_argument("--keep-models", action="store_true")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    if args.quick and not args.max_rows:
        args.max_rows = 16
    if args.judge_items is None:
        args.judge_items = 6 if args.quick else 24
    if args.sycophancy_items is None:
        args.sycophancy_items = 10 if args.quick else 50
    result = asyncio.run(main_async(args))
    print(table(result))
    print(f"\n{result['questions']} held-out questions, {result['seeds']} seeds, "
          f"{result['seconds']:.0f} s")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
