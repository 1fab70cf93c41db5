"""Serving benchmark: a model behind Triton and the OpenAI-compatible API, against the same
model's ``generate`` called directly in this process, in the same run.

    python benchmarks/bench_serve.py [--hidden 256] [--layers 4] [--max-tokens 64]
                                     [--prompt-words 40] [--concurrency 1,4] [--requests 16]
                                     [--repeat 3] [--torch-threads 1] [--json PATH]

The model is a random Llama made from a config (``init_tiny_model``: no download), of the
size given. Both contenders generate greedily and exactly ``--max-tokens`` tokens per
request (``ignore_eos`` for the server; ``min_new_tokens`` for ``generate``), with the
same number of torch threads per generation.

``direct``
    ``model.generate(..., streamer=...)`` in this process (TTFT: when generate hands its
    first new token to the streamer); ``C`` concurrent clients are ``C`` threads, each
    running its share of the requests one after another (torch releases the GIL while it
    computes).
``served``
    ``syllabus serve server`` (a real uvicorn process, the embedded ``tritonserver`` from
    nvidia-pytriton on the CPU, the decoupled Python-backend model), asked through
    ``POST /v1/completions`` with ``stream: true`` (server-sent events) by ``C`` threads,
    each with its own keep-alive httpx client. The model is deployed through the bus (``training.completed``) with the
    evaluation gate off.

Per contender and concurrency: time to first token (TTFT) and total latency per request
(median and p90 over all requests of the median repeat), and throughput (generated tokens
per second of wall time, and requests per second). Each repeat runs every contender once,
the order rotating; the median repeat (by wall time) is reported, with the spread of the
wall times. The last table gives the overhead of Triton plus the API as ratios,
served / direct (latency) and direct / served (throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # for tests.server_fixtures
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = ("the queen lays eggs in spring while workers build comb forage for nectar and "
         "guard the entrance of the hive").split()


@dataclass
class Sample:
    contender: str
    concurrency: int
    wall: float
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall if self.wall else 0.0

    @property
    def requests_per_s(self) -> float:
        return len(self.total) / self.wall if self.wall else 0.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _prompts(n: int, words: int) -> list[str]:
    return [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(words)) for i in range(n)]


# --- direct ----------------------------------------------------------------------------


class Direct:
    def __init__(self, model_dir: Path, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def one(self, prompt: str, max_tokens: int) -> tuple[float, float, int]:
        from transformers.generation.streamers import BaseStreamer

        started = time.perf_counter()
        times: list[float] = []

        class FirstToken(BaseStreamer):
            """Notes when generate hands over its first new token (the first ``put`` is the
            prompt). TextIteratorStreamer would wait for a whole word."""

            def put(self, value: Any) -> None:
                times.append(time.perf_counter())

            def end(self) -> None:
                pass

        ids = self.tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with self.torch.no_grad():
            out = self.model.generate(ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                                      do_sample=False, streamer=FirstToken())
        # the served side decodes each token to text as well
        self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        total = time.perf_counter() - started
        ttft = times[1] - started if len(times) > 1 else total
        return ttft, total, int(out.shape[1] - ids.shape[1])


# --- served ----------------------------------------------------------------------------


_clients = threading.local()


def _http() -> Any:
    """One keep-alive httpx client per client thread, as a real API client holds one
    (making a client per request costs ~30 ms of SSL-context set-up)."""
    import httpx

    client = getattr(_clients, "client", None)
    if client is None:
        client = _clients.client = httpx.Client(timeout=600)
    return client


def served_one(api: str, token: str, model: str, prompt: str,
               max_tokens: int) -> tuple[float, float, int]:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    ttft, tokens = None, 0
    with _http().stream("POST", f"{api}/completions", json=body,
                        headers={"Authorization": f"Bearer {token}"}) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{resp.status_code}: {resp.read()[:300]!r}")
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if "error" in data:
                raise RuntimeError(data["error"]["message"])
            if data.get("usage"):
                tokens = data["usage"]["completion_tokens"]
            if ttft is None and any(c.get("text") for c in data.get("choices", [])):
                ttft = time.perf_counter() - started
    total = time.perf_counter() - started
    return ttft if ttft is not None else total, total, tokens


def run_clients(fn, prompts: list[str], concurrency: int, contender: str) -> Sample:
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    shares = [prompts[i::concurrency] for i in range(concurrency)]

    def client(share: list[str]) -> None:
        for p in share:
            r = fn(p)
            with lock:
                results.append(r)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, shares))
    wall = time.perf_counter() - started
    return Sample(contender, concurrency, wall, [r[0] for r in results],
                  [r[1] for r in results], sum(r[2] for r in results))


# --- main ------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "nvidia-pytriton", "tritonclient", "uvicorn",
                "starlette"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=40)
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--requests", type=int, default=16, help="requests per sample")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]

    from syllabus.contracts import TrainingCompleted
    from syllabus.services.runtime._tiny_model import init_tiny_model
    from tests.server_fixtures import start_pod, upload_model

    print(f"# bench_serve  {time.strftime('%Y-%m-%d %H:%M:%S')}  python "
          f"{platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")
    print("# " + ", ".join(f"{k} {v}" for k, v in _versions().items()))
    print(f"# model: random Llama, hidden {args.hidden}, {args.layers} layers; "
          f"{args.max_tokens} tokens per request, prompts of {args.prompt_words} words, "
          f"{args.requests} requests per sample, {args.repeat} repeats, "
          f"{args.torch_threads} torch thread(s) per generation")

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = init_tiny_model(tmp / "model", hidden_size=args.hidden, layers=args.layers,
                                    heads=max(1, args.hidden // 64))
        prompts = _prompts(args.requests, args.prompt_words)
        direct = Direct(model_dir, args.torch_threads)
        env = {"SYLLABUS_SERVER__EVAL_SUITES": "[]", "SYLLABUS_SERVER__EVAL_FLOORS": "{}",
               "SYLLABUS_SERVER__TORCH_THREADS": str(args.torch_threads),
               "SYLLABUS_SERVER__MODEL_CONCURRENCY": str(max(levels)),
               "SYLLABUS_SERVER__CONCURRENCY": str(max(levels) * 2),
               "SYLLABUS_SERVER__MAX_TOKENS_LIMIT": str(max(args.max_tokens, 64)),
               "SYLLABUS_SERVER__MAX_REQUEST_BYTES": "1000000",
               "SYLLABUS_LOG_LEVEL": "WARNING"}
        with start_pod(tmp / "pod", **env) as pod:
            prefix = upload_model(pod.store, "bench-model", model_dir)
            pod.publish(TrainingCompleted(job_id="bench", model_id="bench-model",
                                          store_prefix=prefix, dataset="bench/v1"))
            deployed = pod.wait_deployed("bench-model", timeout=300)
            if deployed.status != "deployed":
                raise SystemExit(f"the model was not deployed: {deployed.reason}")
            contenders = {
                "direct": lambda p: direct.one(p, args.max_tokens),
                "served": lambda p: served_one(pod.api, pod.token, deployed.name, p,
                                               args.max_tokens),
            }
            # warm-up: one request each (first-call allocations, the gRPC channel)
            for fn in contenders.values():
                fn(prompts[0])
            samples: list[Sample] = []
            names = list(contenders)
            for rep in range(args.repeat):
                order = names[rep % len(names):] + names[:rep % len(names)]
                for c in levels:
                    for name in order:
                        samples.append(run_clients(contenders[name], prompts, c, name))

    rows = []
    print()
    print(f"{'contender':<10}{'clients':>8}{'TTFT p50':>11}{'TTFT p90':>11}{'total p50':>11}"
          f"{'total p90':>11}{'tok/s':>9}{'req/s':>8}{'spread':>8}")
    chosen: dict[tuple[str, int], Sample] = {}
    for c in levels:
        for name in contenders:
            group = sorted((s for s in samples if s.contender == name and s.concurrency == c),
                           key=lambda s: s.wall)
            med = group[len(group) // 2]
            walls = [s.wall for s in group]
            spread = (max(walls) - min(walls)) / statistics.median(walls) if walls else 0.0
            chosen[(name, c)] = med
            row = {"contender": name, "clients": c, "ttft_p50": _pct(med.ttft, 0.5),
                   "ttft_p90": _pct(med.ttft, 0.9), "total_p50": _pct(med.total, 0.5),
                   "total_p90": _pct(med.total, 0.9), "tokens_per_s": med.tokens_per_s,
                   "requests_per_s": med.requests_per_s, "spread": spread}
            rows.append(row)
            print(f"{name:<10}{c:>8}{row['ttft_p50'] * 1000:>9.1f}ms"
                  f"{row['ttft_p90'] * 1000:>9.1f}ms{row['total_p50'] * 1000:>9.1f}ms"
                  f"{row['total_p90'] * 1000:>9.1f}ms{row['tokens_per_s']:>9.0f}"
                  f"{row['requests_per_s']:>8.2f}{spread:>7.0%}")
    print()
    print("overhead of Triton + the OpenAI API (served / direct for latency, "
          "direct / served for throughput)")
    print(f"{'clients':>8}{'TTFT p50':>11}{'total p50':>11}{'throughput':>12}")
    ratios = []
    for c in levels:
        d, s = chosen[("direct", c)], chosen[("served", c)]
        r = {"clients": c,
             "ttft_ratio": _pct(s.ttft, 0.5) / _pct(d.ttft, 0.5),
             "total_ratio": _pct(s.total, 0.5) / _pct(d.total, 0.5),
             "throughput_ratio": d.tokens_per_s / s.tokens_per_s if s.tokens_per_s else 0.0}
        ratios.append(r)
        print(f"{c:>8}{r['ttft_ratio']:>10.2f}x{r['total_ratio']:>10.2f}x"
              f"{r['throughput_ratio']:>11.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "versions": _versions(), "rows": rows,
                                         "ratios": ratios,
                                         "samples": [asdict(s) for s in samples]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
