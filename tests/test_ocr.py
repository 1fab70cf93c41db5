"""OCR of scanned pages (the ``ocr`` extra, RapidOCR on ONNX Runtime): pages that are
pictures of text written here are read back by the real engine, text-layer pages are read
as before, and low-confidence or empty pages are named. The text OCR reads is compared with
what was printed, which the pipeline did not write."""

from __future__ import annotations

import difflib
import json
import re

import pytest

from syllabus.contracts import ParseError, RejectionReason
from syllabus.plugins.parsers import _ocr
from syllabus.plugins.parsers.pdf import PdfParser

from . import _docs
from .test_cli_run import _run

pytestmark = pytest.mark.slow  # about 2 s of OCR a page on 2 cores

PRINTED = [
    "Overwintering\n\nA honey bee colony survives the winter as a tight cluster of workers "
    "around the queen. The bees in the centre of the cluster shiver their flight muscles to "
    "produce heat, and the outer layer of bees insulates the cluster.",
    "Feeding\n\nA strong colony needs about twenty kilograms of stored honey to last until "
    "spring. Colonies with too little honey are fed thick sugar syrup before the weather "
    "turns cold, and beekeepers fit mouse guards to the entrances in autumn.",
]
TEXT_PAGE = ("Swarming\n\nA colony prepares to swarm by rearing new queens in queen cells "
             "along the lower edges of the comb.")


def _letters(text: str) -> str:
    return re.sub(r"\W", "", text).lower()


def _similarity(read: str, printed: str) -> float:
    """Character similarity with spaces and punctuation left out: PP-OCR's recogniser
    sometimes drops the space between two words ("thecluster"), which is a known limit."""
    return difflib.SequenceMatcher(None, _letters(read), _letters(printed)).ratio()


def test_the_extra_is_installed():
    # the install command installs it; without it, every test here would prove nothing
    assert _ocr.available()


def test_scanned_pages_are_read_by_ocr_and_text_pages_as_before():
    data = _docs.scanned_text_pdf_bytes([PRINTED[0], (TEXT_PAGE,), PRINTED[1]])
    doc = PdfParser().parse(data, filename="scan.pdf")
    assert [s.page for s in doc.sections] == [1, 2, 3]
    by_page = {s.page: s for s in doc.sections}
    assert by_page[2].ocr_confidence is None and "queen cells" in by_page[2].text
    for page, printed in ((1, PRINTED[0]), (3, PRINTED[1])):
        section = by_page[page]
        assert section.ocr_confidence is not None and section.ocr_confidence >= 0.9
        assert _similarity(section.text, printed) >= 0.95, section.text
    (warning,) = [w for w in doc.warnings if "read by OCR" in w]
    assert warning.startswith("page(s) 1, 3 of 3 have no text layer and were read by OCR")


def test_a_page_under_the_confidence_floor_is_named_and_left_out(monkeypatch):
    data = _docs.scanned_text_pdf_bytes([PRINTED[0], (TEXT_PAGE,)])
    monkeypatch.setattr(_ocr, "MIN_CONFIDENCE", 0.9999)  # no real page reads this well
    doc = PdfParser().parse(data, filename="scan.pdf")
    assert [s.page for s in doc.sections] == [2]
    (warning,) = [w for w in doc.warnings if "OCR left out" in w]
    assert re.fullmatch(r"OCR left out page\(s\) 1 \(0\.\d\d\): no text, or under the "
                        r"confidence floor 0\.9999", warning), warning
    assert any("their text is missing: OCR read no text above its confidence floor" in w
               for w in doc.warnings)


def test_a_scan_with_nothing_to_read_is_still_no_text_layer():
    # pictures without any text: OCR reads nothing, and the file is refused, saying so
    with pytest.raises(ParseError) as caught:
        PdfParser().parse(_docs.scanned_pdf_bytes(pages=2), filename="blank-scan.pdf")
    assert caught.value.reason is RejectionReason.NO_TEXT_LAYER
    assert "OCR read no text above its confidence floor" in caught.value.detail


def test_ocr_can_be_turned_off(monkeypatch):
    data = _docs.scanned_text_pdf_bytes([PRINTED[0]])
    monkeypatch.setenv("SYLLABUS_OCR", "off")
    with pytest.raises(ParseError) as caught:
        PdfParser().parse(data, filename="scan.pdf")
    assert caught.value.reason is RejectionReason.NO_TEXT_LAYER
    assert "OCR is not enabled (SYLLABUS_OCR=off)" in caught.value.detail


def test_a_huge_media_box_is_rendered_within_the_pixel_cap():
    scale = _ocr.render_scale(14400, 14400)  # PDF's largest page, 200 inches square
    assert (14400 * scale) ** 2 <= _ocr.MAX_PIXELS * 1.0001
    assert _ocr.render_scale(595, 842) == pytest.approx(200 / 72)  # A4 at 200 dpi


def test_a_run_records_ocr_in_the_lineage_and_makes_records(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.pdf").write_bytes(_docs.scanned_text_pdf_bytes(PRINTED))
    out = tmp_path / "out"
    res = _run("run", str(docs), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["ocr_pages"] == 2 and report["formats"] == {"pdf": 1}
    chunks = [json.loads(line) for line in (out / "chunks.jsonl").read_text().splitlines()]
    assert chunks and all(c["lineage"]["ocr"] for c in chunks)
    assert all(c["lineage"]["ocr_confidence"] >= 0.9 for c in chunks)
    assert report["dataset_rows"] > 0, report
    printed = " ".join(res.stdout.split())
    assert "2 pages (2 by OCR)" in printed
