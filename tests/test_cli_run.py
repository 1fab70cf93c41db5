"""`syllabus run` end to end, as a user runs it: a subprocess, the bundled examples, no
services running beforehand. Run twice on the same --out: nothing is duplicated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLES

SYLLABUS = str(Path(sys.executable).parent / "syllabus")
FIXTURES = Path(__file__).parent / "fixtures"


def _run(*args: str, extra_path: Path | None = None, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
    if extra_path:
        env["PYTHONPATH"] = str(extra_path)
    return subprocess.run([SYLLABUS, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_run_on_examples_twice(tmp_path):
    out = tmp_path / "out"
    first = _run("run", str(EXAMPLES), "--out", str(out), "--collection", "bees", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "documents ingested" in first.stdout and "chunks created" in first.stdout
    report = json.loads((out / "report.json").read_text())
    docs = list(EXAMPLES.iterdir())
    assert report["ingested"] == len(docs)
    assert report["rejected"] == 0
    assert report["pages"] >= 4
    assert report["chunks_created"] > 10
    assert report["chunks_dropped"].get("near_duplicate", 0) + \
        report["chunks_dropped"].get("exact_duplicate", 0) >= 1
    lines = (out / "chunks.jsonl").read_text().splitlines()
    assert len(lines) == report["chunks_created"] == report["chunks_in_collection"]
    chunk = json.loads(lines[0])
    assert chunk["collection"] == "bees" and chunk["lineage"]["doc_id"]
    # question-gen and rationale ran with the offline extractive teacher, and said so
    assert report["teacher"].startswith("extractive") and "no LLM" in report["teacher"]
    qg, ra = report["stages"]["question-gen"], report["stages"]["rationale"]
    assert qg["by qa-pairs"] > 20 and qg["by backtranslation"] > 10
    assert ra["records"] == qg["records"] and ra["with a rationale"] > ra["records"] * 0.7
    assert report["teacher_stats"]["calls"] > 0
    ds = out / "dataset"
    rows = [json.loads(x) for name in ("train.jsonl", "eval.jsonl")
            for x in (ds / name).read_text().splitlines()]
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["collection"] == "bees"
    sf = report["stages"]["sycophancy-filter"]
    assert sf["records"] == qg["records"] and sf["accepted"] > qg["records"] * 0.7
    counts = report["dataset"]["counts"]
    assert 0 < counts["selected"] <= sf["accepted"]
    assert len(rows) == report["dataset_rows"] == counts["selected"] + counts["synthetic"]
    assert counts["synthetic"] > 0  # anti-sycophancy examples were mixed in
    for row in rows:
        if row["metadata"]["kind"] == "anti_sycophancy":
            assert "(A) Agree" in row["messages"][-2]["content"] or \
                "(A) Disagree" in row["messages"][-2]["content"]
            continue
        roles = [m["role"] for m in row["messages"]]
        assert roles in (["user", "assistant"], ["system", "user", "assistant"])
        assert all(m["content"].strip() for m in row["messages"])
        meta = row["metadata"]
        assert meta["doc_id"] and meta["chunk_id"] and meta["teacher"] == "extractive:extractive-v1"
    assert any(m["filename"].endswith(".pdf") and m["pages"] for m in (r["metadata"] for r in rows))

    second = _run("run", str(EXAMPLES), "--out", str(out), "--collection", "bees", "--json",
                  cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["chunks_created"] == 0
    assert again["already_submitted"] == len(docs)
    assert (out / "chunks.jsonl").read_text().splitlines() == lines
    assert again["teacher_stats"]["calls"] == 0 and again["dataset_rows"] == len(rows)
    assert again["dataset"]["version"] == report["dataset"]["version"]  # reproducible


def test_run_with_a_third_party_parser_and_bad_files(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "field.note").write_text("%NOTE 1\n@ Drones\nDrones are male bees raised in "
                                     "larger cells. They do not sting and do not forage.\n\n"
                                     "@ Queens\nA queen can lay about two thousand eggs a day "
                                     "in early summer when nectar is plentiful.\n")
    (docs / "empty.md").write_bytes(b"")
    (docs / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    out = tmp_path / "out"
    res = _run("run", str(docs), "--out", str(out), "--json",
               extra_path=FIXTURES / "thirdparty", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["ingested"] == 1 and report["chunks_created"] == 2
    assert set(report["rejections"]) == {"empty_file", "unknown_type"}
    assert "photo.png" in report["rejections"]["unknown_type"][0]
    chunks = [json.loads(x) for x in (out / "chunks.jsonl").read_text().splitlines()]
    assert {c["lineage"]["parser"]["name"] for c in chunks} == {"notes:notes"}
    assert {c["lineage"]["parser"]["version"] for c in chunks} == {"1.2.3"}
    assert sorted(c["lineage"]["section"][0] for c in chunks) == ["Drones", "Queens"]


def test_run_reports_a_missing_path(tmp_path):
    res = _run("run", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert res.returncode != 0
    assert "nope" in res.stderr
