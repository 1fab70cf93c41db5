"""A chunk's language: the detector on text it did not see written (held-out sentences in
three languages), and through the ingest service into the lineage, the run report and the
data set manifest."""

from __future__ import annotations

import json

import pytest

from syllabus.services.ingest._language import detect_language

from ._office import docx_bytes, pptx_bytes
from .test_cli_run import _run

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
    res = _run("run", str(docs), "--out", str(out), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["formats"] == {"docx": 1, "pptx": 1}
    assert set(report["languages"]) == {"de", "en"}, report["languages"]
    chunks = [json.loads(line) for line in (out / "chunks.jsonl").read_text().splitlines()]
    by_file = {c["lineage"]["filename"]: c["lineage"]["language"] for c in chunks}
    assert by_file == {"bienen.pptx": "de", "bees.docx": "en"}
    manifest = json.loads((out / "dataset" / "manifest.json").read_text())
    languages = manifest["sources"]["languages"]
    assert set(languages) <= {"de", "en", "und"} and languages.get("en", 0) > 0, languages
