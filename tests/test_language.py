"""A chunk's language: the detector on text it did not see written (held-out sentences in
three languages), and through the ingest service into the lineage, the run report and the
data set manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syllabus.contracts import (
    ChunkCreated,
    ChunkLineage,
    PluginRef,
    QARecord,
    TeacherRef,
    sha256_hex,
    unsupported,
)
from syllabus.plugins._language import detect_language, record_language
from syllabus.plugins.filters.heuristic import HeuristicQualityFilter
from syllabus.plugins.filters.sycophancy import SycophancyDetector
from syllabus.plugins.questions.backtranslation import BacktranslationGenerator
from syllabus.plugins.questions.qa_pairs import QAPairsGenerator, answer_sentences
from syllabus.plugins.teachers.extractive import ExtractiveTeacher
from syllabus.plugins.teachers.openai import OpenAITeacher
from tests.openai_server import text

from ._office import docx_bytes, pptx_bytes
from .test_cli_run import _run

pytest_plugins = ["tests.openai_server"]

MIXED = Path(__file__).resolve().parent.parent / "examples" / "mixed"

SENTENCES = {
    "en": "The queen lays up to two thousand eggs a day during the height of summer.",
    "de": "Die Königin legt im Hochsommer bis zu zweitausend Eier am Tag in die Waben.",
    "fr": "La reine pond jusqu'à deux mille œufs par jour au plus fort de l'été.",
    "es": "La reina pone hasta dos mil huevos al día en pleno verano dentro de la colmena.",
    "it": "La regina depone fino a duemila uova al giorno nel pieno dell'estate.",
    "nl": "De koningin legt midden in de zomer tot tweeduizend eieren per dag.",
}


@pytest.mark.parametrize("code", sorted(SENTENCES))
def test_each_language_is_named(code):
    assert detect_language(SENTENCES[code]) == code


@pytest.mark.parametrize("text", ["Page 3", "Month | Task", "- 4 -", "", "12.5 % 3.1 %"])
def test_too_little_text_is_not_guessed(text):
    assert detect_language(text) is None


def test_a_run_counts_chunks_and_rows_by_language(tmp_path):
    """A German deck and an English Word document: the report counts the chunks by
    language, each chunk's lineage names its language, and so does the manifest."""
    docs = tmp_path / "docs"
    docs.mkdir()
    german = [("Die Königin", " ".join([SENTENCES["de"]] * 3)),
              ("Der Winter", "Im Winter bilden die Bienen eine Traube und wärmen sich "
                             "gegenseitig, indem sie ihre Flugmuskeln zittern lassen.")]
    (docs / "bienen.pptx").write_bytes(pptx_bytes(german))
    (docs / "bees.docx").write_bytes(docx_bytes([SENTENCES["en"] * 2,
                                                 "Worker bees build comb from wax that "
                                                 "they secrete from glands on the abdomen."]))
    out = tmp_path / "out"
    res = _run("run", str(docs), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["formats"] == {"docx": 1, "pptx": 1}
    assert set(report["languages"]) == {"de", "en"}, report["languages"]
    chunks = [json.loads(line) for line in (out / "chunks.jsonl").read_text().splitlines()]
    by_file = {c["lineage"]["filename"]: c["lineage"]["language"] for c in chunks}
    assert by_file == {"bienen.pptx": "de", "bees.docx": "en"}
    manifest = json.loads((out / "dataset" / "manifest.json").read_text())
    languages = manifest["sources"]["languages"]
    assert set(languages) <= {"de", "en", "und"} and languages.get("en", 0) > 0, languages
    # the extractive teacher's rules are English: the German chunks are passed over by
    # each question technique, counted and said, never made into "low quality" records
    german_chunks = sum(1 for c in chunks if c["lineage"]["language"] == "de")
    why = "the extractive teacher works in English (en) only; this text is in German (de)"
    assert report["passed_over"] == {
        f"question-gen {name} (de)": {"count": german_chunks, "detail": why, "unit": "chunk"}
        for name in ("qa-pairs", "backtranslation")}
    assert report["techniques"]["qa-pairs"]["passed over"] == german_chunks
    printed = " ".join(res.stdout.split())
    assert "passed over" in printed and "question-gen qa-pairs (de): " in printed


# --- what is passed over, and what is written in the chunk's language -----------------

GERMAN_PASSAGE = (
    "Im Winter bilden die Arbeiterinnen eine dichte Traube um die Königin. Die Bienen in "
    "der Mitte zittern mit ihren Flugmuskeln und erzeugen so Wärme. Ein starkes Volk braucht "
    "etwa zwanzig Kilogramm Honig, um bis zum Frühjahr zu kommen.")
FRENCH_PASSAGE = (
    "On taille les pommiers à la fin de l'hiver, avant que les bourgeons ne gonflent. Les "
    "branches qui se croisent sont coupées en premier, car elles se blessent en frottant. "
    "Une taille trop forte provoque la pousse de nombreux gourmands au printemps suivant.")


def _chunk(text: str, language: str | None) -> ChunkCreated:
    cid = sha256_hex(text.encode())
    return ChunkCreated(
        chunk_id=cid, collection="lang", text=text, token_count=80, index=0,
        store_key=f"chunks/{cid}.json", run_id="run-1",
        lineage=ChunkLineage(doc_id="d" * 64, filename="doc.md", media_type="text/markdown",
                             language=language, char_start=0, char_end=len(text),
                             parser=PluginRef(name="markdown"),
                             chunker=PluginRef(name="structured"), settings_hash="h"))


def test_unsupported_names_who_works_in_which_language():
    extractive = ExtractiveTeacher()
    assert unsupported("en", [("qa-pairs", QAPairsGenerator()), ("the extractive teacher",
                                                                 extractive)]) is None
    assert unsupported("de", [("qa-pairs", QAPairsGenerator()), ("the extractive teacher",
                                                                 extractive)]) == (
        "the extractive teacher works in English (en) only; this text is in German (de)")
    # too little text to tell is no reason to pass anything over
    assert unsupported(None, [("the extractive teacher", extractive)]) is None


async def test_a_chat_teacher_is_asked_in_the_chunks_language_unless_the_recipe_names_one(
        openai_server):
    pair = '{"pairs": [{"question": "Wie viel Honig braucht ein Volk?", "answer": "Zwanzig."}]}'
    openai_server.script(text(pair), text(pair), text(pair))
    teacher = OpenAITeacher(model="scripted", url=openai_server.url)
    for chunk, options in ((_chunk(GERMAN_PASSAGE, "de"), {}),
                           (_chunk(FRENCH_PASSAGE, "fr"), {}),
                           (_chunk(GERMAN_PASSAGE, "de"), {"language": "en"})):
        out = await QAPairsGenerator().generate(chunk, teacher=teacher, options=options)
        assert len(out.records) == 1, out.failures
    await teacher.aclose()
    asked = [r.json["messages"][-1]["content"] for r in openai_server.requests]
    assert "Write the questions and answers in German." in asked[0]
    assert "Write the questions and answers in French." in asked[1]
    assert "Write the questions and answers in English." in asked[2]


async def test_a_base_model_gets_few_shot_examples_in_the_chunks_language(openai_server):
    def answer(body: dict) -> str:  # a question in the prompt's language, then a score
        prompt = body["prompt"]
        if prompt.endswith("Score:"):
            return "5"
        if prompt.endswith("Anweisung:"):
            return " Wie bleibt die Königin im Winter warm?"
        return " Quand taille-t-on les pommiers ?" if "Réponse" in prompt else \
            " Was brauchen die Bienen im Winter, und wie viel Honig braucht ein Volk?"

    openai_server.default = answer
    teacher = OpenAITeacher(model="scripted-base", url=openai_server.url, base_model=True)
    german = await QAPairsGenerator().generate(_chunk(GERMAN_PASSAGE, "de"), teacher=teacher,
                                               options={})
    french = await QAPairsGenerator().generate(_chunk(FRENCH_PASSAGE, "fr"), teacher=teacher,
                                               options={})
    back = await BacktranslationGenerator().generate(
        _chunk(GERMAN_PASSAGE, "de"), teacher=teacher, options={"min_chunk_tokens": 1})
    await teacher.aclose()
    prompts = [r.json["prompt"] for r in openai_server.requests]
    de = [p for p in prompts if p.endswith("\nFrage:")]
    fr = [p for p in prompts if p.startswith("Réponse: ") and p.endswith("\nQuestion:")]
    assert len(de) >= 3 and len(fr) >= 3 and len(de) + len(fr) + 2 == len(prompts)
    assert all(p.startswith("Antwort: ") and "Wann wurde der Eiffelturm fertiggestellt?" in p
               for p in de)
    assert {r.response for r in german.records} <= set(answer_sentences(GERMAN_PASSAGE, 3))
    assert german.records and french.records
    assert prompts[-2].endswith(f"Antwort: {GERMAN_PASSAGE}\nAnweisung:")
    assert back.records[0].instruction == "Wie bleibt die Königin im Winter warm?"


async def test_filters_pass_over_a_german_record_when_their_rules_are_english():
    """sycophancy-detector's patterns are English: the service keeps a German record with
    a decision naming why, and heuristic-quality passes over its English-only checks."""
    record = QARecord(
        record_id="r" * 64, collection="lang", instruction="Wie viel Honig braucht ein "
        "starkes Volk im Winter?", response="Ein starkes Volk braucht etwa zwanzig Kilogramm "
        "Honig, um bis zum Frühjahr zu kommen.", chunk_id="c" * 64,
        lineage=_chunk(GERMAN_PASSAGE, "de").lineage, technique=PluginRef(name="qa-pairs"),
        teacher=TeacherRef(kind="openai", model="m"))
    assert record_language(record) == "de"
    why = unsupported(record_language(record), [("sycophancy-detector",
                                                 SycophancyDetector())])
    assert why == "sycophancy-detector works in English (en) only; this text is in German (de)"
    decision = await HeuristicQualityFilter().judge(record, context=GERMAN_PASSAGE,
                                                    teacher=None, options={})
    assert decision.kept and decision.details["passed_over"] == [
        "well_formed", "boilerplate", "first_person"], decision.reason


@pytest.mark.slow
def test_the_mixed_examples_are_read_in_every_format_and_both_languages(tmp_path):
    """examples/mixed (Word, PowerPoint, a scanned PDF, Markdown; English and German) with
    the offline teacher: every file is ingested, the scanned page by OCR, the chunks are
    counted by language, and the German ones are passed over by the English rules."""
    out = tmp_path / "out"
    res = _run("run", str(MIXED), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["formats"] == {"docx": 2, "markdown": 1, "pdf": 1, "pptx": 1}
    assert report["rejected"] == 0 and report["ocr_pages"] == 1
    assert set(report["languages"]) == {"de", "en"}, report["languages"]
    chunks = [json.loads(line) for line in (out / "chunks.jsonl").read_text().splitlines()]
    files = {c["lineage"]["filename"]: c["lineage"]["language"] for c in chunks}
    assert files == {"winter-checklist.docx": "en", "inspection-record-scan.pdf": "en",
                     "bienen-im-winter.docx": "de", "schwarmkontrolle.pptx": "de",
                     "honigernte.md": "de"}
    german = sum(1 for c in chunks if c["lineage"]["language"] == "de")
    assert report["passed_over"]["question-gen qa-pairs (de)"]["count"] == german
    made = {json.loads(line)["metadata"]["filename"] for name in ("train.jsonl", "eval.jsonl")
            for line in (out / "dataset" / name).read_text().splitlines()}
    assert {"winter-checklist.docx", "inspection-record-scan.pdf"} <= made, made


async def test_german_number_words_ground_a_german_answer():
    record = QARecord(
        record_id="n" * 64, collection="lang", instruction="Wie viel Honig braucht ein "
        "starkes Volk bis zum Frühjahr?", response="Ein starkes Volk braucht etwa 20 "
        "Kilogramm Honig.", chunk_id="c" * 64, lineage=_chunk(GERMAN_PASSAGE, "de").lineage,
        technique=PluginRef(name="qa-pairs"), teacher=TeacherRef(kind="openai", model="m"))
    decision = await HeuristicQualityFilter().judge(record, context=GERMAN_PASSAGE,
                                                    teacher=None, options={})
    assert decision.details["checks"]["grounded"]["passed"] is True, decision.reason


def test_a_copied_german_or_french_example_question_is_refused():
    from syllabus.contracts import OutputParseError
    from syllabus.plugins.questions.qa_pairs import BASE_EXAMPLES_BY_LANGUAGE, base_question

    answer = "Jedes Serverrack braucht unter Volllast etwa vier Kilowatt Strom."
    for code in ("de", "fr"):
        copied = BASE_EXAMPLES_BY_LANGUAGE[code][1][-1][1]
        with pytest.raises(OutputParseError, match="copies a prompt example"):
            base_question(answer)(" " + copied)
