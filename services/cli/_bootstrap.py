"""``syllabus run --teacher bootstrap``: Humpback's M0 as the teacher.

Instruction backtranslation (Li et al. 2023, "Self-Alignment with Instruction
Backtranslation") starts from a *base* model: fine-tune it on a small seed set of
(instruction, output) pairs to get M0, then use M0 for self-augmentation (writing
instructions for unlabelled text) and self-curation (scoring the pairs 1 to 5). This
runs that recipe on the machine, in three steps, each one a real part:

1. **The seed.** The pipeline runs over PATHS with the offline ``extractive`` teacher (its
   QA pairs and rationales are the seed set: an organisation with its own QA pairs can
   put them among PATHS) into ``<out>/bootstrap/seed/``, and the trainer fine-tunes the
   base model (``--base-model``; Gemma 3 270M, LoRA, by default) on that data set: M0.
2. **M0 as a GGUF file.** llama.cpp's ``convert_hf_to_gguf.py`` (copied into the venv by
   the install command, from the llama-cpp-python sdist) writes M0 as
   ``<out>/bootstrap/m0-<model id>.gguf`` (Q8_0).
3. **M0 as the teacher.** The pipeline runs over PATHS again, in ``<out>``, with the
   ``local`` teacher serving that file: every technique, backtranslation's augmentation and
   curation among them, asks M0. ``--train``/``--serve`` then train on, and serve, what
   M0 wrote.

The report's ``bootstrap`` section gives the seed run's yield, M0 (its training loss and
file) and the conversion's time; the rest of the report is the M0 run's, so its
per-technique table *is* what M0 does as a teacher, zeros named with their reasons.

Departures from the paper, and why:

* M0 is asked with the base-model prompts (few-shot completions with a grammar, as the
  ``local`` teacher asks Gemma 3 270M), not with chat instructions: a 270M model tuned on
  a few hundred extractive pairs answers questions in its chat template, but does not
  follow a multi-paragraph task prompt that asks for JSON. A bigger ``--base-model``
  would warrant chat prompts (``base_model = false`` in ``[teacher.options]``).
* The seed is the extractive teacher's records, not human-written pairs (Open Assistant's
  3,200 in the paper); the paper's backward model M_yx (trained on output-to-instruction
  pairs) is the same M0 here, asked through the backtranslation technique's prompt.
* One iteration (M0 only): training M1 on the seed plus M0's curated pairs, and
  re-scoring with M1, is issue 14's ``--iterations``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from ..runtime import Settings
from ._report import RunReport

__all__ = ["BOOTSTRAP", "converter_script", "export_gguf", "render_bootstrap", "run_bootstrap"]

#: the ``--teacher`` value that runs this recipe
BOOTSTRAP = "bootstrap"
_LOG_TAIL = 3000


def converter_script() -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py``: ``$SYLLABUS_LLAMA_CONVERT``, else the copy the
    install command put in ``<venv>/share/syllabus/llama.cpp-<version>/``."""
    named = os.environ.get("SYLLABUS_LLAMA_CONVERT")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ValueError(f"SYLLABUS_LLAMA_CONVERT={named}: no such file")
        return path
    from importlib.metadata import PackageNotFoundError, version

    try:  # the llama.cpp the installed engine vendors: the converter for its GGUF format
        path = (Path(sys.prefix) / "share" / "syllabus"
                / f"llama.cpp-{version('llama-cpp-python')}" / "convert_hf_to_gguf.py")
    except PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ValueError("llama.cpp's convert_hf_to_gguf.py is not installed: run "
                         "`python3 tools/install.py` (it copies it into the venv), or name "
                         "one with SYLLABUS_LLAMA_CONVERT")
    return path


def export_gguf(model_dir: Path, path: Path, *, outtype: str = "q8_0") -> Path:
    """Write the transformers model folder ``model_dir`` as the GGUF file ``path`` (Q8_0 by
    default), through llama.cpp's converter in a subprocess. A failure is a
    ``RuntimeError`` with the converter's last output; a half-written file never stays."""
    script = converter_script()
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir} is not a model folder (no config.json)")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    cmd = [sys.executable, str(script), str(model_dir), "--outfile", str(part),
           "--outtype", outtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,  # noqa: S603
                          cwd=script.parent)
    if proc.returncode != 0 or not part.is_file():
        part.unlink(missing_ok=True)
        tail = (proc.stdout + proc.stderr)[-_LOG_TAIL:]
        raise RuntimeError(f"converting {model_dir} to GGUF failed (exit {proc.returncode}):"
                           f"\n{tail}")
    os.replace(part, path)
    return path


def _rows(report: RunReport) -> int:
    """The data set version's rows, train and eval (0: none built)."""
    ds = report.dataset or {}
    return int(ds.get("train_rows") or 0) + int(ds.get("eval_rows") or 0)


def _seed_summary(seed: RunReport) -> dict[str, Any]:
    return {"out_dir": seed.out_dir, "teacher": seed.teacher,
            "rows": _rows(seed), "records": seed.stages.get("question-gen", {}).get(
                "records", 0), "dataset": seed.outputs.get("dataset"),
            "seconds": seed.timings.get("total_seconds")}


def _m0_options(gguf: Path, settings: Settings) -> dict[str, Any]:
    """The ``local`` teacher's options for M0: the base-model prompts (see the module's
    docstring), and Gemma's chat format when the file is a Gemma with no chat template of
    its own; a recipe's ``[teacher.options]`` win where its kind is ``local`` (another
    kind's options mean nothing to this teacher, so they are not passed)."""
    import gguf as gguf_py

    fields = gguf_py.GGUFReader(str(gguf)).fields

    def text(key: str) -> str | None:
        field = fields.get(key)
        return bytes(field.parts[field.data[0]]).decode() if field and field.data else None

    options: dict[str, Any] = {"base_model": True}
    if text("tokenizer.chat_template") is None and (text("general.architecture") or
                                                    "").startswith("gemma"):
        options["chat_format"] = "gemma"
    if settings.teacher.kind == "local":
        options.update({k: v for k, v in settings.teacher.options.items() if k != "model"})
    return options


async def run_bootstrap(paths: Sequence[Path], *, collection: str, out: Path,
                        settings: Settings, console: Console, fmt: str | None = None,
                        timeout: float | None = None, train: bool = False,
                        serve: bool = False, base_model: str | None) -> RunReport:
    """The seed run and M0 (steps 1 and 2), then the run with M0 as its teacher (step 3).
    ``base_model`` is what M0 is fine-tuned from (None: the tiny random model). A failure
    before step 3 is a ``RuntimeError`` naming the seed run's report; ``<out>/report.json``
    then holds the bootstrap section so far."""
    from ._run import run_pipeline

    converter_script()  # not installed: said now, not after the seed run
    t0 = time.perf_counter()
    work = out / "bootstrap"
    seed_settings = settings.model_copy(deep=True)
    seed_settings.teacher.kind = "extractive"
    seed_settings.teacher.model = None
    seed_settings.teacher.options = {}
    console.print("[bold]bootstrap 1/3[/bold]: the seed data set (the extractive teacher) "
                  f"and M0 fine-tuned from {base_model or 'the tiny random model'}")
    # M0's job id is derived from the seed data set, the base model and the settings: a
    # rerun on the same --out reuses M0 (and its GGUF file) instead of training another
    # M0 is a teacher: it is asked plain prompts, so it is trained on chat rows (openai),
    # never on step-by-step's predict:/explain: inputs, whatever the final run's format
    seed = await run_pipeline(paths, collection=collection, out=work / "seed",
                              settings=seed_settings, console=console,
                              fmt="openai" if fmt in (None, "step-by-step") else fmt,
                              timeout=timeout, train=True, base_model=base_model,
                              train_job_prefix="m0")
    section: dict[str, Any] = {"seed": _seed_summary(seed), "m0": dict(seed.training)}
    section["m0"].pop("loss_curve", None)
    section["m0"].pop("metrics", None)
    try:
        gguf = await _m0_gguf(seed, section, work, console)
    except Exception as exc:
        _failed_report(out, seed, section, str(exc)).write(out / "report.json")
        raise
    m0_settings = settings.model_copy(deep=True)
    m0_settings.teacher.kind = "local"
    m0_settings.teacher.model = str(gguf)
    m0_settings.teacher.options = _m0_options(gguf, settings)
    section["m0"]["teacher_options"] = dict(m0_settings.teacher.options)
    console.print("[bold]bootstrap 3/3[/bold]: the pipeline with M0 as its teacher")
    report = await run_pipeline(paths, collection=collection, out=out, settings=m0_settings,
                                console=console, fmt=fmt, timeout=timeout, train=train,
                                serve=serve, base_model=base_model)
    section["seconds"] = time.perf_counter() - t0
    rows = _rows(report)
    section["m0_rows"] = rows
    calls = (report.teacher_stats or {}).get("calls", 0) + (
        report.teacher_stats or {}).get("cache_hits", 0)
    if not calls and report.already_submitted:
        # every document was already ingested in <out>: its records are an earlier run's
        report.warnings.append(
            f"bootstrap: M0 was asked nothing: the {report.already_submitted} document(s) "
            f"were already processed in {out} by an earlier run, whose records (from the M0 "
            "of that run) make this data set; use a new --out to ask this M0 afresh")
    elif not rows:
        report.warnings.append(f"bootstrap: M0 as the teacher made no data set rows (the "
                               f"seed run made {section['seed']['rows']}); the "
                               "techniques' table says why")
    report.bootstrap = section
    report.write(out / "report.json")
    return report


async def _m0_gguf(seed: RunReport, section: dict[str, Any], work: Path,
                   console: Console) -> Path:
    """Step 2: M0 (the seed run's model) as ``<work>/m0-<model id>.gguf``, converted once."""
    if not _rows(seed):  # no version, or a failed one ({"failed": reason, ...}), or 0 rows
        why = (seed.dataset or {}).get("failed") or ("it has no rows" if seed.dataset
                                                     else "no data set was built")
        raise RuntimeError(f"bootstrap: the seed run made no data set to train M0 on "
                           f"({why}; see {seed.outputs.get('report')})")
    if seed.training.get("outcome") != "completed":
        raise RuntimeError(f"bootstrap: training M0 failed: "
                           f"{seed.training.get('reason') or 'no reason given'} "
                           f"(see {seed.outputs.get('report')})")
    console.print("[bold]bootstrap 2/3[/bold]: M0 as a GGUF file (llama.cpp's "
                  "convert_hf_to_gguf.py, Q8_0)")
    t1 = time.perf_counter()
    gguf = work / f"m0-{seed.training['model_id']}.gguf"
    reused = gguf.is_file()  # this M0 was converted by an earlier run on this --out
    if not reused:
        await asyncio.to_thread(export_gguf, Path(seed.training["model_dir"]), gguf)
    section["m0"].update({"gguf": str(gguf), "gguf_bytes": gguf.stat().st_size,
                          "gguf_reused": reused,
                          "convert_seconds": 0.0 if reused else time.perf_counter() - t1})
    return gguf


def _failed_report(out: Path, seed: RunReport, section: dict[str, Any],
                   error: str) -> RunReport:
    """``<out>/report.json`` when the bootstrap stopped before M0's run: what it got to."""
    out.mkdir(parents=True, exist_ok=True)
    report = RunReport(run_id=f"bootstrap-{time.strftime('%Y%m%dT%H%M%S')}",
                       collection=seed.collection, out_dir=str(out), files=seed.files)
    report.bootstrap = {**section, "error": error}
    report.warnings.append(error)
    return report


def render_bootstrap(console: Console, section: dict[str, Any]) -> None:
    if not section:
        return
    seed, m0 = section["seed"], section["m0"]
    console.print(
        f"bootstrap (Humpback M0): seed run {seed['rows'] or 0} data set rows from "
        f"{seed['records']} records ({seed['teacher']}, {seed['seconds'] or 0:.0f} s, "
        f"{seed['out_dir']}); M0 {m0.get('model_id')} fine-tuned from {m0.get('base_model')} "
        f"({m0.get('method')}, loss {m0.get('first_loss') or 0:.3f} -> "
        f"{m0.get('last_loss') or 0:.3f}), as {m0.get('gguf')} "
        f"({(m0.get('gguf_bytes') or 0) / 2**20:.0f} MiB, "
        + ("an earlier run's file" if m0.get("gguf_reused") else
           f"converted in {m0.get('convert_seconds') or 0:.0f} s")
        + "); with M0 as the teacher: "
        f"{section.get('m0_rows') or 0} rows; {section.get('seconds') or 0:.0f} s in all")
