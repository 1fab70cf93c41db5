"""Training throughput: the Syllabus trainer's worker against a plain Hugging Face
``Trainer``, on the same model, the same data and the same number of processes, in one run.

    python benchmarks/train_throughput.py                       # tiny model, CPU, 2 processes
    python benchmarks/train_throughput.py --model-size 1b --gpus 1     # ~1.1B Llama, bf16
    python benchmarks/train_throughput.py --model-size 1b --gpus 8 --batch-size 8 --json out.json

Both contenders run under ``torchrun`` (DDP; NCCL on GPUs, gloo on CPUs), full
fine-tuning with AdamW, the same learning-rate schedule, per-process batch and sequence
length, and bf16 autocast on GPUs that support it (fp32 on CPUs). The data are synthetic
chat rows whose token count exceeds ``--seq-len``, cut to exactly ``--seq-len`` tokens by
the trainer's own encoding (``syllabus.services.trainer.encode_examples``: answer-only
labels), so every step processes ``processes x batch x seq-len`` tokens and neither
contender pads. The Hugging Face side gets the very same token ids and labels.

Measured: tokens per second over the steps after ``--warmup`` (the first steps compile
kernels and allocate), and the model FLOPs utilisation

    MFU = 6 * N * tokens/s / (processes * peak FLOP/s per device)

with N the model's parameter count (embeddings included; the attention term is left out).
The peak is ``--peak-tflops``, or looked up from the GPU's name (dense bf16), or, on CPUs,
measured: one thread's fp32 matrix-multiply rate (torchrun gives each process one thread)
times the processes, so the CPU "MFU" is against achieved GEMM speed, not a datasheet.

``--model-size tiny`` is the 2-layer model of ``syllabus model init-tiny``; ``1b`` is a
Llama config of TinyLlama-1.1B's shape (22 layers, hidden 2048, GQA 32/4 heads, vocabulary
32000) with random weights, built from the config (nothing is downloaded) and trained in
fp32 master weights with bf16 autocast.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = "@@bench-train "

#: dense bf16 peak TFLOP/s by GPU name (datasheets; SXM parts)
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0,
               "L40": 181.0, "A10G": 125.0, "A10": 125.0, "L4": 121.0, "V100": 125.0,
               "RTX 4090": 165.0, "A6000": 155.0}

SIZES = {
    "tiny": None,  # init_tiny_model defaults
    "1b": {"vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632,
           "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
           "max_position_embeddings": 4096, "tie_word_embeddings": False},
}

_WORDS = ("bee hive queen worker drone comb wax honey nectar pollen forager dance winter "
          "cluster swarm mite varroa brood frame super colony flower summer spring").split()


# --- the inputs ------------------------------------------------------------------------------


def make_model(size: str, out: Path) -> Path:
    """A model folder: the tiny model, or a config-built model with the tiny tokenizer."""
    from syllabus.services.runtime._tiny_model import init_tiny_model

    init_tiny_model(out)
    if SIZES[size] is None:
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(out)
    cfg = LlamaConfig(**SIZES[size], bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    del model
    return out


def make_data(out: Path, *, rows: int, seq_len: int) -> Path:
    """Chat rows longer than ``seq_len`` tokens (the encoder cuts them to exactly that)."""
    import random

    rnd = random.Random(0)
    path = out / "train.jsonl"
    with path.open("w") as fh:
        for _ in range(rows):
            q = " ".join(rnd.choice(_WORDS) for _ in range(seq_len // 2))
            a = " ".join(rnd.choice(_WORDS) for _ in range(seq_len))
            fh.write(json.dumps({"messages": [{"role": "user", "content": q},
                                              {"role": "assistant", "content": a}]}) + "\n")
    return path


# --- the Hugging Face Trainer side (run under torchrun with --hf-worker) ---------------------


def hf_worker(spec_path: str) -> int:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )
    from transformers.utils import logging as hf_logging

    from syllabus.services.trainer import encode_examples, load_examples

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    spec = json.loads(Path(spec_path).read_text())
    hp = spec["hp"]
    tok = AutoTokenizer.from_pretrained(spec["base_model"], local_files_only=True)
    data = encode_examples(tok, load_examples(spec["train_file"]), max_seq_len=hp["max_seq_len"])
    rows = [{"input_ids": s.input_ids, "attention_mask": [1] * len(s.input_ids),
             "labels": s.labels} for (s,) in data.samples]
    model = AutoModelForCausalLM.from_pretrained(spec["base_model"], local_files_only=True,
                                                 dtype=torch.float32)
    model.config.use_cache = False
    cuda = torch.cuda.is_available() and spec["backend"] == "nccl"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=str(Path(spec["out_dir"]) / "hf"), per_device_train_batch_size=hp["batch_size"],
        max_steps=hp["max_steps"], learning_rate=hp["learning_rate"], lr_scheduler_type="cosine",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=hp["max_grad_norm"], bf16=bf16,
        logging_steps=10_000, save_strategy="no", report_to=[], seed=hp["seed"],
        dataloader_drop_last=True, ddp_find_unused_parameters=False, use_cpu=not cuda,
        disable_tqdm=True, optim="adamw_torch", remove_unused_columns=False,
        ddp_backend=spec["backend"])
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=default_data_collator, callbacks=[Clock()])
    trainer.train()
    if int(os.environ.get("RANK", "0")) == 0:
        mem = torch.cuda.max_memory_allocated() if cuda else None
        print(MARKER + json.dumps({"times": times, "mem": mem}), flush=True)
    return 0


# --- running the contenders -----------------------------------------------------------------


def _torchrun(nproc: int, module_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--nnodes=1", "--standalone", "--max_restarts=0", *module_args]


def _run(cmd: list[str], log: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "TOKENIZERS_PARALLELISM": "false"})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[-2:]} failed (exit {proc.returncode}); see {log}:\n"
                           + (proc.stdout + proc.stderr)[-3000:])
    return proc.stdout.splitlines()


def run_syllabus(spec_path: Path, nproc: int, warmup: int, tokens_per_step: int,
                 log: Path) -> dict[str, float]:
    from syllabus.services.trainer._launch import parse_event

    lines = _run(_torchrun(nproc, ["-m", "syllabus.services.trainer._worker", str(spec_path)]),
                 log)
    events = [e for e in map(parse_event, lines) if e and e["event"] == "progress"]
    measured = [e for e in events if e["step"] > warmup]
    tokens = sum(e["window_tokens"] for e in measured)
    seconds = sum(e["window_seconds"] for e in measured)
    steps = measured[-1]["step"] - warmup
    assert tokens == steps * tokens_per_step, (tokens, steps, tokens_per_step)
    mems = [e["gpu_memory_bytes"] for e in events if e.get("gpu_memory_bytes") is not None]
    mem = max(mems) if mems else float("nan")
    return {"tokens_per_second": tokens / seconds, "seconds": seconds, "steps": steps,
            "gpu_memory_gb": mem / 1e9, "loss_last": events[-1]["loss"]}


def run_hf(spec_path: Path, nproc: int, warmup: int, tokens_per_step: int,
           log: Path) -> dict[str, float]:
    lines = _run(_torchrun(nproc, [str(Path(__file__).resolve()), "--hf-worker",
                                   str(spec_path)]), log)
    out = next(json.loads(line[line.index(MARKER) + len(MARKER):]) for line in lines
               if MARKER in line)
    times = out["times"]
    steps = len(times) - warmup
    seconds = times[-1] - times[warmup - 1]
    return {"tokens_per_second": steps * tokens_per_step / seconds, "seconds": seconds,
            "steps": steps, "loss_last": float("nan"),
            "gpu_memory_gb": out["mem"] / 1e9 if out.get("mem") else float("nan")}


def peak_flops(args, nproc: int, cuda: bool) -> tuple[float, str]:
    """Peak FLOP/s of ONE process's device, and where the number comes from."""
    import torch

    if args.peak_tflops:
        return args.peak_tflops * 1e12, "given (--peak-tflops)"
    if cuda:
        name = torch.cuda.get_device_name(0)
        for key, tf in PEAK_TFLOPS.items():
            if key in name:
                return tf * 1e12, f"{name}: {tf:g} TFLOP/s dense bf16 (datasheet)"
        return float("nan"), f"{name}: unknown peak (pass --peak-tflops)"
    torch.set_num_threads(1)
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        a @ b
        reps += 1
    rate = 2 * n ** 3 * reps / (time.perf_counter() - t0)
    return rate, f"measured: fp32 {n}x{n} matmul on one thread, {rate / 1e9:.1f} GFLOP/s"


def _gb(v: float) -> str:
    return "n/a" if v != v else f"{v:.2f}"  # NaN: not measured (CPU, or the HF side)


def environment() -> dict[str, Any]:
    import torch
    import transformers

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain"):
        commit += " (uncommitted changes)"
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "commit": commit,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hf-worker", metavar="SPEC", help=argparse.SUPPRESS)
    p.add_argument("--model-size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--gpus", type=int, default=0, help="GPUs (processes); 0: CPU processes")
    p.add_argument("--procs", type=int, default=2, help="CPU processes when --gpus 0")
    p.add_argument("--batch-size", type=int, default=None,
                   help="per process (default 8 tiny, 4 for 1b)")
    p.add_argument("--seq-len", type=int, default=None, help="default 256 tiny, 1024 for 1b")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per contender")
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the measurement")
    p.add_argument("--repeat", type=int, default=1, help="runs per contender (median)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak per device")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.hf_worker:
        return hf_worker(args.hf_worker)

    import torch

    from syllabus.services.trainer import Hyperparameters, JobSpec

    cuda = args.gpus > 0
    if cuda and torch.cuda.device_count() < args.gpus:
        p.error(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()} GPU(s)")
    nproc = args.gpus if cuda else args.procs
    batch = args.batch_size or (4 if args.model_size == "1b" else 8)
    seq = args.seq_len or (1024 if args.model_size == "1b" else 256)
    if args.steps <= args.warmup or (args.steps - args.warmup) % args.warmup:
        p.error("--steps must exceed --warmup by a multiple of --warmup")
    env = environment()
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    print(f"# train throughput — {env['date']}, commit {env['commit'] or '?'}, python "
          f"{env['python']}, torch {env['torch']}, transformers {env['transformers']}, "
          f"{env['cpus']} CPUs, GPU: {env['gpu'] or 'none'}", flush=True)
    print(f"# building the {args.model_size} model and the data in {work} ...", flush=True)
    model_dir = make_model(args.model_size, work / "model")
    n_params = sum(v.numel() for v in __import__("safetensors.torch", fromlist=["x"])
                   .load_file(str(model_dir / "model.safetensors")).values())
    rows = nproc * batch * args.steps
    data = make_data(work, rows=rows, seq_len=seq)
    hp = Hyperparameters(max_steps=args.steps, learning_rate=1e-4, batch_size=batch,
                         max_seq_len=seq, schedule="cosine", warmup_ratio=0.0,
                         checkpoint_every=0, eval_every=0, log_every=args.warmup,
                         max_grad_norm=1.0, cpu_processes=nproc)
    spec = JobSpec(job_id="bench", model_id="bench", method="full", base_model=model_dir,
                   train_file=data, eval_file=None, dataset_format="openai",
                   out_dir=work / "out", backend="nccl" if cuda else "gloo", hp=hp)
    spec_path = work / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    tokens_per_step = nproc * batch * seq
    peak, peak_src = peak_flops(args, nproc, cuda)

    contenders = {"syllabus worker": run_syllabus, "HF Trainer": run_hf}
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in contenders}
    order = list(contenders)
    for r in range(args.repeat):
        for name in order[r % 2:] + order[:r % 2]:  # alternate who goes first
            print(f"# run {r + 1}/{args.repeat}: {name} ...", flush=True)
            log = work / f"{name.replace(' ', '-')}-{r}.log"
            samples[name].append(contenders[name](spec_path, nproc, args.warmup,
                                                  tokens_per_step, log))
    results = {}
    for name, runs in samples.items():
        tps = statistics.median(s["tokens_per_second"] for s in runs)
        results[name] = {"tokens_per_second": tps,
                         "mfu": 6 * n_params * tps / (nproc * peak),
                         "spread": (max(s["tokens_per_second"] for s in runs)
                                    - min(s["tokens_per_second"] for s in runs)) / tps,
                         "gpu_memory_gb": max(s["gpu_memory_gb"] for s in runs),
                         "runs": runs}
    base = results["HF Trainer"]["tokens_per_second"]
    print(f"\nmodel: {args.model_size} ({n_params / 1e6:,.1f}M parameters), "
          f"{'bf16 autocast on ' + str(nproc) + ' GPU(s), NCCL' if cuda else 'fp32 on ' + str(nproc) + ' CPU processes, gloo'}, "
          f"DDP, batch {batch} x seq {seq} per process = {tokens_per_step:,} tokens/step, "
          f"{args.steps} steps ({args.warmup} warm-up not measured), {args.repeat} run(s)")
    print(f"peak per device: {peak_src}\n")
    print(f"| {'contender':<16} | {'tokens/s':>12} | {'vs HF Trainer':>13} | {'MFU':>7} | "
          f"{'peak mem GB':>11} | {'spread':>6} |")
    print(f"|{'-' * 18}|{'-' * 14}|{'-' * 15}|{'-' * 9}|{'-' * 13}|{'-' * 8}|")
    for name, res in results.items():
        print(f"| {name:<16} | {res['tokens_per_second']:>12,.0f} | "
              f"{res['tokens_per_second'] / base:>12.2f}x | {res['mfu'] * 100:>6.2f}% | "
              f"{_gb(res['gpu_memory_gb']):>11} | {res['spread'] * 100:>5.1f}% |")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "args": vars(args) | {
            "json": str(args.json)}, "parameters": n_params, "processes": nproc,
            "peak_flops": peak, "peak_source": peak_src, "results": results}, indent=2,
            default=str))
    print(f"\nlogs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
