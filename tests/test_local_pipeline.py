"""The real model through the whole bus: ``syllabus run --teacher local`` starts llama.cpp
on Gemma 3 270M (a base model, so the techniques send few-shot completion prompts), and
qa-pairs and step-by-step run on a short document the pipeline did not write. The
questions and rationales are the model's own text; they are checked against the chunk."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from syllabus.plugins.questions.qa_pairs import answer_sentences

SYLLABUS = str(Path(sys.executable).parent / "syllabus")

DOCUMENT = """# Overwintering honey bee colonies

A honey bee colony survives the winter as a tight cluster of workers around the queen. The
bees in the centre of the cluster shiver their flight muscles to produce heat, and the
outer layer of bees insulates the cluster. A strong colony needs about twenty kilograms of
stored honey to last until spring. Beekeepers fit mouse guards to the hive entrances in
autumn, because mice look for warm places to nest. Colonies with too little honey are fed
thick sugar syrup before the weather turns cold.
"""

RECIPE = """
[question_gen]
techniques = ["qa-pairs"]
[question_gen.options."qa-pairs"]
pairs_per_chunk = 6
temperature = 0.0
[rationale]
technique = "step-by-step"
[filters]
techniques = ["heuristic-quality"]
[datasets]
augmenters = []
"""

_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_STOP = set("the and for are was were with from that this what when where which who why "
            "how does did can its their they them than into about after before also been "
            "not but all you your is".split())


def _content(text: str) -> set[str]:
    # "queen's" is "queen": possessives and plurals count as the word
    return {w.removesuffix("'s").rstrip("s'") for w in _WORD.findall(text.lower())} - _STOP


@pytest.mark.slow
def test_qa_pairs_and_step_by_step_with_gemma_through_the_bus(tmp_path: Path):
    doc = tmp_path / "overwintering.md"
    doc.write_text(DOCUMENT)
    (tmp_path / "syllabus.toml").write_text(RECIPE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
    out = tmp_path / "out"
    done = subprocess.run([SYLLABUS, "run", str(doc), "--out", str(out), "--teacher", "local",
                           "--format", "step-by-step"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["teacher"].startswith("local (gemma3-270m)")
    assert (out / "llama-server.log").stat().st_size > 0

    chunks = [json.loads(line)["text"] for line in
              (out / "chunks.jsonl").read_text().splitlines()]
    chunk_words = set().union(*(_content(c) for c in chunks))
    rows = [json.loads(line) for name in ("train.jsonl", "eval.jsonl")
            for line in (out / "dataset" / name).read_text().splitlines()]
    predict = [r for r in rows if r["task"] == "predict"]
    explain = [r for r in rows if r["task"] == "explain"]
    # the model wrote questions for sentences of the chunk; every answer is grounded in
    # the chunk, and every question asks about what the chunk says
    assert predict, report
    for row in predict:
        # the input is the question and the chunk it was written from (Hsieh et al.'s
        # tasks share one input)
        question, _, context = row["input"].removeprefix("predict: ").partition(
            "\n\ncontext: ")
        assert context in [c.strip() for c in chunks], row["input"]
        assert question.endswith("?")
        assert any(row["output"] in " ".join(c.split()) for c in chunks), row
        assert _content(question) & chunk_words, question
    # step-by-step: Gemma's rationales are kept only when its answer agrees with the
    # record's, and what they say comes from the chunk
    # (Gemma 3 270M keeps few or none here: most of its rationales quote text the
    # document does not contain, and each dropped one says so in its decision)
    for row in explain:
        words = _content(row["output"])
        assert len(words & chunk_words) >= 0.5 * len(words), row["output"]

    # the report counts every request and every unusable output, per technique and task
    tasks = report["teacher_stats"]["tasks"]
    techniques = report["techniques"]
    made = techniques["qa-pairs"].get("made", 0)
    assert made == report["stages"]["question-gen"]["by qa-pairs"] == len(predict)
    unusable = techniques["qa-pairs"].get("unusable", 0)
    asked = sum(len(answer_sentences(c, 6)) for c in chunks)  # one question per sentence
    assert asked >= 5 and made + unusable == asked
    assert tasks["qa_pairs"]["requests"] == asked + tasks["qa_pairs"]["parse_retries"]
    assert tasks["qa_pairs"]["parse_retries"] >= unusable
    failures = sum(e["count"] for k, e in report["failures"].items()
                   if k.startswith("question-gen qa-pairs"))
    assert failures == unusable
    sbs = techniques["step-by-step"]
    assert sbs.get("kept", 0) + sbs.get("rejected", 0) == made
    reasons = [d["reason"] for r in predict for d in r["metadata"]["decisions"]
               if d["filter"] == "step-by-step"]
    assert len(reasons) == made and all(x.startswith("rationale ") for x in reasons)
    # every record without a rationale is counted by why, and none at all is a warning
    ra = report["stages"]["rationale"]
    assert sum(n for k, n in ra.items() if k.startswith("dropped: ")) == made - len(explain)
    assert (not explain) == any(w.startswith("no record got a rationale (")
                                for w in report["warnings"])
    assert sbs.get("made", 0) == len(explain) == \
        report["stages"]["rationale"].get("with a rationale", 0)
    assert tasks["rationale"]["requests"] >= made
    # the engine's pace over the run, next to the engine alone's on a sample of its prompts
    engine = report["teacher_stats"]["engine"]
    assert 0 < engine["alone"]["requests"] <= 8
    assert engine["alone"]["completion_tokens"] > 0 and engine["run_tokens_per_s"] > 0
    assert engine["vs_engine_alone"] == pytest.approx(
        engine["run_tokens_per_s"] / engine["alone"]["tokens_per_s"])
    printed = " ".join(done.stdout.split())  # the console wraps long lines
    assert "local engine:" in printed and "the engine alone" in printed


GERMAN_DOCUMENT = """# Bienenvölker im Winter

Ein Bienenvolk überwintert als dichte Traube aus Arbeiterinnen, in deren Mitte die Königin
sitzt. Die Bienen im Inneren der Traube zittern mit ihren Flugmuskeln und erzeugen so
Wärme. Die äußere Schicht der Bienen hält die Wärme wie eine Decke im Inneren der Traube.
Ein starkes Volk braucht etwa zwanzig Kilogramm eingelagerten Honig bis zum Frühjahr.
Im Herbst setzen die Imker Mäusegitter vor die Fluglöcher, weil Mäuse warme Nistplätze
suchen. Völker mit zu wenig Honig werden vor dem Kälteeinbruch mit dickem Zuckersirup
gefüttert.
"""

FRENCH_DOCUMENT = """# La taille des pommiers

On taille les pommiers à la fin de l'hiver, avant que les bourgeons ne commencent à
gonfler. Les branches qui se croisent sont coupées en premier, car elles se blessent en
frottant l'une contre l'autre. Le centre de l'arbre est dégagé pour que la lumière atteigne
les fruits. Une taille trop sévère provoque au printemps la pousse de nombreux rameaux
verticaux appelés gourmands. Les outils sont désinfectés entre deux arbres pour ne pas
transmettre les maladies.
"""

LANGUAGE_RECIPE = """
[question_gen]
techniques = ["qa-pairs"]
[question_gen.options."qa-pairs"]
pairs_per_chunk = 6
temperature = 0.0
[filters]
techniques = ["heuristic-quality"]
[datasets]
augmenters = []
"""


@pytest.mark.slow
def test_german_and_french_documents_make_records_in_their_languages_with_gemma(
        tmp_path: Path):
    """Two documents the pipeline did not write, in German and in French: Gemma 3 270M is
    prompted with few-shot examples in each chunk's language, and its questions are
    checked by the language detector and against the chunk."""
    from syllabus.plugins._language import detect_language

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bienen.md").write_text(GERMAN_DOCUMENT)
    (docs / "pommiers.md").write_text(FRENCH_DOCUMENT)
    (tmp_path / "syllabus.toml").write_text(LANGUAGE_RECIPE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
    out = tmp_path / "out"
    done = subprocess.run([SYLLABUS, "run", str(docs), "--out", str(out), "--teacher", "local"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["languages"] == {"de": 1, "fr": 1}, report["languages"]
    # an LLM teacher works in any language; only heuristic-quality's English checks pass
    assert {k.split(" (")[0] for k in report["passed_over"]} == {
        f"heuristic-quality {check}" for check in ("well_formed", "boilerplate",
                                                   "first_person")}, report["passed_over"]
    chunks = {json.loads(line)["lineage"]["filename"]: json.loads(line)["text"]
              for line in (out / "chunks.jsonl").read_text().splitlines()}
    rows = [json.loads(line) for name in ("train.jsonl", "eval.jsonl")
            for line in (out / "dataset" / name).read_text().splitlines()]
    by_file: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        messages = {m["role"]: m["content"] for m in row["messages"]}
        source = row["metadata"]["filename"]
        assert row["metadata"]["language"] == {"bienen.md": "de", "pommiers.md": "fr"}[source]
        by_file.setdefault(source, []).append((messages["user"], messages["assistant"]))
    # records from both files; every answer is a sentence of its chunk, and most questions
    # are in the chunk's language (the detector, not the pipeline's rules, says so)
    assert set(by_file) == {"bienen.md", "pommiers.md"}, report
    for name, code in (("bienen.md", "de"), ("pommiers.md", "fr")):
        pairs = by_file[name]
        assert all(a in " ".join(chunks[name].split()) for _, a in pairs), pairs
        in_language = [q for q, _ in pairs if detect_language(q) == code]
        print(name, f"{len(in_language)} of {len(pairs)} questions in {code}:", pairs)
        assert len(in_language) * 2 > len(pairs), (name, pairs)
