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
HELDOUT = EXAMPLES.parent / "bees-heldout-qa.jsonl"


def _run(*args: str, extra_path: Path | None = None, cwd: Path,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")},
           **(env or {})}
    if extra_path:
        env["PYTHONPATH"] = str(extra_path)
    return subprocess.run([SYLLABUS, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def _check_heldout_questions(rows: list[dict], chunk_lines: list[str]) -> None:
    """bench_loop's held-out questions: at least 40, each answer stated in the chunks of
    the documents it names, and none of the questions among the data set's rows."""
    from syllabus.services.evals import normalize_answer

    held = [json.loads(x) for x in HELDOUT.read_text().splitlines() if x.strip()]
    assert len(held) >= 40
    texts: dict[str, str] = {}
    for line in chunk_lines:
        chunk = json.loads(line)
        name = Path(chunk["lineage"]["filename"]).name
        texts[name] = texts.get(name, "") + " " + normalize_answer(chunk["text"])
    asked = {normalize_answer(m["content"]) for r in rows for m in r["messages"]
             if m["role"] == "user"}
    for item in held:
        question, answer = (m["content"] for m in item["messages"])
        # in its own document's chunks, or, for the repost (whose near-duplicate chunks are
        # dropped), in those of the page it copies
        assert item["source"] in texts, item["source"]
        assert normalize_answer(answer) in texts[item["source"]] or (
            item["source"] == "waggle-dance-repost.md"
            and normalize_answer(answer) in texts["foragers-waggle-dance.html"]), item
        assert normalize_answer(question) not in asked, question


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
    # the build's time by phase, in the order it ran; the default selection embeds
    timings = report["dataset"]["timings"]
    assert list(timings)[:3] == ["load", "embed", "exact_duplicate"]
    assert list(timings)[-2:] == ["export", "write"]
    assert "semantic_duplicate" in timings and timings["embed"] > 0
    assert all(v >= 0 for v in timings.values()), timings
    assert "data set build time: load " in first.stdout + first.stderr
    for row in rows:
        if row["metadata"]["kind"] == "anti_sycophancy":
            assert "(A) Agree" in row["messages"][-2]["content"] or \
                "(A) Disagree" in row["messages"][-2]["content"]
            continue
        roles = [m["role"] for m in row["messages"]]
        assert roles in (["user", "assistant"], ["system", "user", "assistant"])
        assert all(m["content"].strip() for m in row["messages"])
        meta = row["metadata"]
        assert meta["doc_id"] and meta["chunk_id"] and meta["teacher"] == "extractive:extractive-v2"
    assert any(m["filename"].endswith(".pdf") and m["pages"] for m in (r["metadata"] for r in rows))
    _check_heldout_questions(rows, lines)

    # the bars count messages, not deliveries: one question-gen message per chunk created
    bars = {line.split()[0]: line.split()[-2] for line in first.stderr.splitlines()
            if "━" in line}
    assert bars["question-gen"] == f"{report['chunks_created']}/{report['chunks_created']}"
    assert bars["ingest"] == f"{len(docs)}/{len(docs)}"
    assert "api-annotator" not in bars  # no API spec: nothing for it to do, so no bar

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


@pytest.mark.slow
def test_run_on_a_folder_of_bad_inputs_names_every_file(tmp_path):
    """Every kind of bad input in one folder: each file is named in the report with its
    reason (or its warning, when it could be read), and nothing is dead-lettered."""
    from ._docs import html_bytes, nested_blockquote_md_bytes, write_bad_inputs

    docs = tmp_path / "docs"
    bad = write_bad_inputs(docs)
    (docs / "tiny.md").write_text("Bees.\n")  # text, but not one chunk's worth
    prose = " ".join(["Worker bees fan their wings to evaporate water from the nectar, and "
                      "cap each cell with wax once the honey is ripe."] * 6)
    (docs / "report.pdf").write_bytes(html_bytes(f"<h1>Honey</h1><p>{prose}</p>"))
    (docs / "deep.md").write_bytes(nested_blockquote_md_bytes(20000, prose))
    (docs / "invoice\u202efdp.txt").write_text(prose)  # a bidi override in the name
    (docs / "leak.yaml").write_text(
        "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    get:\n"
        "      responses:\n        '200':\n          description: ok\n          content:\n"
        "            application/json:\n              schema:\n                type: object\n"
        "                default: {$ref: 'file:///etc/passwd'}\n")
    (docs / "deep.json").write_text('{"openapi": "3.0.0", "x": ' + "[" * 100_000)
    from ._office import handbook_docx_bytes

    (docs / "handbook.docx").write_bytes(handbook_docx_bytes())
    out = tmp_path / "out"
    res = _run("run", str(docs), "--out", str(out), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    report = json.loads(res.stdout)
    assert report["dead_letters"] == []
    rejected = {item.split(":", 1)[0]: reason for reason, items in report["rejections"].items()
                for item in items}
    for name, (_, reason) in bad.items():
        assert rejected.get(name) == reason.value, (name, rejected)
    assert rejected["tiny.md"] == "too_short"
    assert rejected["leak.yaml"] == "invalid_spec"
    assert rejected["deep.json"] == "invalid_spec"
    assert "root:" not in res.stdout + res.stderr  # nothing was read from /etc/passwd
    assert rejected["'invoice\\u202efdp.txt'"] == "unsafe_name"
    assert "\u202e" not in res.stdout + res.stderr  # shown escaped, never raw
    warnings = "\n".join(report["warnings"])
    assert ("report.pdf: the name says application/pdf but the content is text/html"
            in warnings)
    assert "deep.md:" in warnings
    assert "handbook.docx: the document has tracked changes" in warnings
    assert report["ingested"] == 3  # report.pdf, deep.md and handbook.docx
    assert report["formats"] == {"html": 1, "markdown": 1, "docx": 1}  # by content, not name
    assert report["files"] == len(bad) + 7


def test_run_with_nothing_usable_says_why_there_is_no_data_set(tmp_path):
    """No accepted records is a normal outcome: the run says so at once (no retries, no
    dead letter), and names every file with its reason."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "empty.md").write_bytes(b"")
    (docs / "tiny.txt").write_text("Bees.\n")
    res = _run("run", str(docs), "--out", str(tmp_path / "out"), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["dead_letters"] == []
    assert report["dataset"] == {"failed": "no_accepted_records",
                                 "detail": "the collection 'default' has no accepted records "
                                           "on syllabus.records.accepted"}
    assert any(w.startswith("no data set was built (no_accepted_records)")
               for w in report["warnings"])
    assert {r: len(v) for r, v in report["rejections"].items()} == {"empty_file": 1,
                                                                    "too_short": 1}


def test_unusable_teacher_output_is_reported_by_reason_with_an_example(tmp_path, openai_server):
    """A teacher that answers every prompt by echoing it back (no JSON, no score): the
    report says, per stage, technique and reason, how often and what the output was."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "swarming.md").write_bytes((EXAMPLES / "swarming.md").read_bytes())
    env = {"SYLLABUS_TEACHER__KIND": "openai", "SYLLABUS_TEACHER__URL": openai_server.url,
           "SYLLABUS_TEACHER__MODEL": "echo", "SYLLABUS_TEACHER__MAX_RETRIES": "0"}
    res = _run("run", str(docs), "--out", str(tmp_path / "out"), "--json", cwd=tmp_path,
               env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    failures = report["failures"]
    assert any(k.startswith("question-gen qa-pairs: unusable qa-pairs output") for k in failures)
    for reason, entry in failures.items():
        assert entry["count"] >= 1
        assert entry["example"], reason  # what the model wrote, to see why
    assert sum(e["count"] for e in failures.values()) == \
        sum(report["stages"].get(s, {}).get("unusable teacher output", 0)
            for s in report["stages"])
    ts = report["teacher_stats"]
    assert ts["calls"] == len(openai_server.requests) and ts["failures"] == 0
    assert 0 < ts["busy_seconds"] <= report["timings"]["total_seconds"]
    # time per service: one document, its chunks' question-gen messages, one data set
    # request (nothing else ran in this process before: the counts are this run's)
    services = report["services"]
    assert services["ingest"]["messages"] == 1
    assert services["question-gen"]["messages"] == report["chunks_created"] > 0
    assert services["dataset-builder"]["messages"] >= 1
    assert all(v["handler_seconds"] > 0 for v in services.values()), services


def test_run_train_base_model_choices_are_checked_before_the_pipeline(tmp_path):
    """``--train`` fine-tunes Gemma 3 270M unless ``--base-model`` names another; a GGUF
    that is missing is named at once (with the ``tiny`` way out), nothing submitted, and
    ``--base-model`` without ``--train`` is a usage error."""
    from click.testing import CliRunner

    from syllabus.services.cli import main
    from syllabus.services.cli._run_train import DEFAULT_BASE_MODEL, TINY_BASE_MODEL

    assert (DEFAULT_BASE_MODEL, TINY_BASE_MODEL) == ("gemma3-270m", "tiny")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nBees make honey.\n")
    out = tmp_path / "out"
    missing = tmp_path / "missing.gguf"
    result = CliRunner().invoke(main, ["run", str(docs), "--out", str(out), "--train",
                                       "--base-model", str(missing)])
    assert result.exit_code == 2, result.output
    assert "missing.gguf" in result.output and "--base-model tiny" in result.output
    assert not out.exists()  # nothing started
    result = CliRunner().invoke(main, ["run", str(docs), "--out", str(out),
                                       "--base-model", "tiny"])
    assert result.exit_code == 2 and "add --train" in result.output


@pytest.mark.parametrize(("options", "target_size", "warmed"), [
    ({}, None, True),  # the default selection has semantic dedup
    ({"semantic_threshold": None}, 50, True),  # a diversity subset embeds too
    ({"semantic_threshold": None}, None, False),  # nothing embeds: nothing is loaded
    ({"semantic_threshold": "not a number"}, None, False),  # the build reports it
])
def test_run_loads_the_embedder_in_the_background_only_when_selection_needs_it(
        options, target_size, warmed):
    """``syllabus run`` warms the data set builder's embedder while the pipeline works, so
    the build at the end does not wait for the model."""
    import threading
    from types import SimpleNamespace

    from syllabus.services.cli._run import _warm_embedder
    from syllabus.services.runtime import Settings

    class Recording:
        def __init__(self) -> None:
            self.loaded = threading.Event()

        def warm(self) -> None:
            assert threading.current_thread().name == "embedder-warm-up"
            self.loaded.set()

    settings = Settings()
    settings.datasets.options = options
    settings.datasets.target_size = target_size
    embedder = Recording()
    _warm_embedder(SimpleNamespace(settings=settings, state={"embedder": embedder}))
    assert embedder.loaded.wait(5 if warmed else 0.2) is warmed
