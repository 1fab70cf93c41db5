"""Which llama.cpp engine the ``local`` teacher should run: throughput on Syllabus's own
prompts, side by side, on this machine.

    python benchmarks/bench_engine.py [--chunks N] [--quick] [--llama-server PATH]
                                      [--json PATH]

1. **The prompts.** The base-model techniques (qa-pairs, backtranslation with
   self-curation, step-by-step, llm-judge) run on the first N chunks of ``examples/bees``
   against llama-cpp-python's server, as ``syllabus run --teacher local`` runs them; every
   request (prompt, ``max_tokens``, stop sequences) is recorded in the order it was made.
2. **The contenders** replay that list, greedy (temperature 0), with the concurrency the
   run uses for that engine:
   * ``llama-cpp-python``: its server, one request at a time (concurrency 2 queues);
   * ``llama-cpp-python+cache``: the same with its RAM prompt cache (``--cache True``);
   * ``llama-server -np 2``, ``-np 4`` and ``-np 8``: the native server
     (``--llama-server`` or ``$SYLLABUS_LLAMA_SERVER``), with that many slots and
     continuous batching, at that concurrency;
   * ``engine alone``: ``llama_cpp.Llama`` in this process, the requests one after another
     with no HTTP and no server, the reference the ratio column divides by.
3. **Columns:** wall seconds, prompt and completion tokens, all tokens and completion
   tokens per second of wall time, and the pace as a share of the engine alone's (its
   wall time over the contender's, on the same requests: greedy outputs can differ in
   length between engines).

``--json`` writes ``{"prompts": n, "contenders": {name: {"seconds", "prompt_tokens",
"completion_tokens", "tokens_per_s", "completion_tokens_per_s", "vs_engine_alone"}}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _chunks(n: int) -> list[Any]:
    """The first ``n`` chunks of examples/bees, as ingest makes them: a ``syllabus run``
    with the offline teacher writes them to chunks.jsonl."""
    import subprocess

    from syllabus.contracts import ChunkCreated

    with tempfile.TemporaryDirectory(prefix="bench-engine-chunks-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
        subprocess.run([str(Path(sys.executable).parent / "syllabus"), "run",
                        str(ROOT / "examples" / "bees"), "--out", tmp], check=True, env=env,
                       cwd=tmp, capture_output=True)
        rows = [json.loads(line) for line in
                (Path(tmp) / "chunks.jsonl").read_text().splitlines() if line.strip()]
    return [ChunkCreated.model_validate(r) for r in rows[:n]]


class _Recorder:
    """A teacher that forwards to ``inner`` and records every completion request."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.kind, self.model = inner, inner.kind, inner.model
        self.base_model = True
        self.requests: list[dict[str, Any]] = []
        self._sem = asyncio.Semaphore(2)

    async def complete(self, messages, *, params):
        if params.prompt is not None:
            self.requests.append({"prompt": params.prompt, "max_tokens": params.max_tokens,
                                  "stop": params.stop or []})
        async with self._sem:
            return await self.inner.complete(messages, params=params)


async def record_prompts(chunks: list[Any], teacher: Any) -> list[dict[str, Any]]:
    from syllabus.plugins.filters.llm_judge import LLMJudge
    from syllabus.plugins.questions.backtranslation import BacktranslationGenerator
    from syllabus.plugins.questions.qa_pairs import QAPairsGenerator
    from syllabus.plugins.rationales.step_by_step import StepByStep

    rec = _Recorder(teacher)

    async def one(chunk: Any) -> None:
        qa, bt = await asyncio.gather(
            QAPairsGenerator().generate(chunk, teacher=rec, options={}),
            BacktranslationGenerator().generate(chunk, teacher=rec, options={}))
        for record in [*qa.records, *bt.records]:
            await StepByStep().rationalize(record, context=chunk.text, teacher=rec, options={})
            await LLMJudge().judge(record, context=chunk.text, teacher=rec, options={})

    await asyncio.gather(*(one(c) for c in chunks))
    return rec.requests


async def replay(url: str, model: str, requests: list[dict[str, Any]],
                 concurrency: int) -> dict[str, Any]:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    totals = {"prompt_tokens": 0, "completion_tokens": 0}
    async with httpx.AsyncClient(timeout=600) as client:
        async def one(r: dict[str, Any]) -> None:
            async with sem:
                resp = await client.post(f"{url}/completions", json={
                    "model": model, "prompt": r["prompt"], "max_tokens": r["max_tokens"],
                    "stop": r["stop"], "temperature": 0.0})
                resp.raise_for_status()
                usage = resp.json().get("usage") or {}
                for k in totals:
                    totals[k] += int(usage.get(k) or 0)
        started = time.perf_counter()
        await asyncio.gather(*(one(r) for r in requests))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, **totals}


def engine_alone(path: Path, requests: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    from syllabus.plugins.teachers.local import engine_alone as alone

    return alone(path, [(r["prompt"], r["max_tokens"], tuple(r["stop"] or ())) for r in requests],
                 n_ctx=4096, threads=threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=12)
    ap.add_argument("--quick", action="store_true", help="4 chunks")
    ap.add_argument("--llama-server", default=os.environ.get("SYLLABUS_LLAMA_SERVER"))
    ap.add_argument("--only", default="", help="comma-separated contenders to run "
                    "(default: all), e.g. 'llama-server -np 4,engine alone'")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    n = 4 if args.quick else args.chunks

    from syllabus.plugins.teachers.local import LocalServer, resolve_model
    from syllabus.plugins.teachers.openai import OpenAITeacher

    name, path = resolve_model(None)
    threads = len(os.sched_getaffinity(0))
    log_dir = Path(tempfile.mkdtemp(prefix="bench-engine-"))

    def server(**kw: Any) -> LocalServer:
        return LocalServer(path, name=name, n_ctx=4096, threads=threads, chat_format=None,
                           log_dir=log_dir, start_timeout=180, **kw).start()

    chunks = _chunks(n)
    first = server()
    try:
        async def rec() -> list[dict[str, Any]]:
            teacher = OpenAITeacher(model=name, url=first.url, base_model=True, timeout=600)
            try:
                return await record_prompts(chunks, teacher)
            finally:
                await teacher.aclose()
        requests = asyncio.run(rec())
    finally:
        first.stop()
    print(f"{len(requests)} requests recorded from {len(chunks)} chunks", file=sys.stderr)

    contenders: dict[str, dict[str, Any]] = {}
    configs: list[tuple[str, dict[str, Any], int]] = [
        ("llama-cpp-python", {}, 2), ("llama-cpp-python+cache", {"prompt_cache": True}, 2)]
    if args.llama_server:
        configs += [(f"llama-server -np {np}", {"engine": "llama-server", "parallel": np,
                                                "binary": Path(args.llama_server)}, np)
                    for np in (2, 4, 8)]
    else:
        print("no --llama-server: the native server is left out", file=sys.stderr)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    for label, kw, concurrency in configs:
        if only and label not in only:
            continue
        srv = server(**kw)
        try:
            contenders[label] = asyncio.run(replay(srv.url, name, requests, concurrency))
        finally:
            srv.stop()
        print(f"{label}: {contenders[label]['seconds']:.1f}s", file=sys.stderr)
    contenders["engine alone"] = engine_alone(path, requests, threads)
    alone = contenders["engine alone"]
    for c in contenders.values():
        c["completion_tokens_per_s"] = c["completion_tokens"] / c["seconds"]
        c["tokens_per_s"] = (c["prompt_tokens"] + c["completion_tokens"]) / c["seconds"]
        # the same requests in both: the share of the engine alone's pace (its wall time
        # over this one's); greedy outputs can differ in length between engines, so the
        # requests, not the tokens, are what is compared
        c["vs_engine_alone"] = alone["seconds"] / c["seconds"]

    header = (f"{'contender':<26}{'seconds':>9}{'prompt tok':>12}{'compl. tok':>12}"
              f"{'tok/s':>9}{'compl. tok/s':>14}{'vs alone':>10}")
    print(f"bench_engine: {len(requests)} requests from {len(chunks)} chunks of "
          f"examples/bees, {threads} threads")
    print(header)
    for label, c in contenders.items():
        print(f"{label:<26}{c['seconds']:>9.1f}{c['prompt_tokens']:>12}"
              f"{c['completion_tokens']:>12}{c['tokens_per_s']:>9.1f}"
              f"{c['completion_tokens_per_s']:>14.1f}"
              f"{c['vs_engine_alone']:>9.0%}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(
            {"prompts": len(requests), "chunks": len(chunks), "threads": threads,
             "contenders": contenders}, indent=2))


if __name__ == "__main__":
    main()
