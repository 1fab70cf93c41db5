"""`syllabus run` killed (the whole process group, SIGKILL) at several points, then run
again on the same --out: the same data set version as a clean run, nothing dead-lettered,
and a report that counts what the resumed run did apart from what was already there."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import EXAMPLES

SYLLABUS = str(Path(sys.executable).parent / "syllabus")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
    # what a killed process left unacknowledged comes back after this (30 s by default)
    env["SYLLABUS_BUS__ACK_WAIT"] = "4"
    return env


def _run(docs: Path, out: Path) -> dict:
    proc = subprocess.run([SYLLABUS, "run", str(docs), "--out", str(out), "--json"],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _files(folder: Path, pattern: str) -> int:
    return sum(1 for _ in folder.glob(pattern)) if folder.exists() else 0


# when to kill: as soon as the store shows that the run has got this far
POINTS = {
    "submitting": lambda store: _files(store / "documents", "*") >= 2,
    "generating": lambda store: _files(store / "chunks", "*.json") >= 15,
    "filtering": lambda store: _files(store / "cache" / "teacher", "*.json") >= 250,
}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_killed_runs_resume_to_the_clean_runs_data_set(tmp_path: Path):
    docs = tmp_path / "docs"
    shutil.copytree(EXAMPLES, docs)
    clean = _run(docs, tmp_path / "clean")
    version = clean["dataset"]["version"]
    clean_rows = sorted((tmp_path / "clean" / "dataset" / "train.jsonl").read_text()
                        .splitlines())

    for point, reached in POINTS.items():
        out = tmp_path / point
        proc = subprocess.Popen([SYLLABUS, "run", str(docs), "--out", str(out)], env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 300
        while not reached(out / "store") and proc.poll() is None:
            assert time.monotonic() < deadline, f"the run never got to {point}"
            time.sleep(0.05)
        assert proc.poll() is None, f"the run finished before it was killed at {point}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

        again = _run(docs, out)
        assert again["dataset"]["version"] == version, point
        rows = sorted((out / "dataset" / "train.jsonl").read_text().splitlines())
        assert rows == clean_rows, point
        assert again["dead_letters"] == [], point
        # the report: what this run did, and what was already there, apart
        before = again["before"].get("documents", 0)
        assert again["ingested"] + before == clean["ingested"], (point, again["ingested"],
                                                                 before)
        assert again["chunks_in_collection"] == clean["chunks_in_collection"], point
        # what a killed run announced is counted as already there, not again as created
        assert again["chunks_created"] + again["before"].get("chunks", 0) <= \
            clean["chunks_created"] + again["chunks_superseded"], point
        if point != "submitting":
            assert before > 0 or again["resumed"], point
