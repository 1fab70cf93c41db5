"""The Word and PowerPoint parsers, on files python-docx and python-pptx write here.

The expected text is what the fixtures put into each part (``tests/_office.HANDBOOK``),
not what the parser returns, and every kept or left-out structure has its own check.
"""

from __future__ import annotations

import io
import zipfile

import pytest

from syllabus.contracts import ChunkOptions, ParseError, RejectionReason
from syllabus.plugins.chunkers.structured import StructuredChunker
from syllabus.plugins.parsers import _ooxml
from syllabus.plugins.parsers.docx import DocxParser
from syllabus.plugins.parsers.pptx import PptxParser
from syllabus.services.ingest._documents import sniff_mismatch
from tests import _office
from tests.test_parsers import route

H = _office.HANDBOOK


@pytest.fixture(scope="module")
def handbook():
    return DocxParser().parse(_office.handbook_docx_bytes(), filename="handbook.docx")


@pytest.fixture(scope="module")
def talk():
    return PptxParser().parse(_office.talk_pptx_bytes(hidden=2), filename="talk.pptx")


def _with(doc, phrase):
    found = [s for s in doc.sections if phrase in s.text]
    assert found, f"no section contains {phrase!r}: {[s.text for s in doc.sections]}"
    return found[0]


# --- Word --------------------------------------------------------------------------------


def test_docx_headings_make_the_path_and_the_title(handbook):
    assert handbook.title == H["title"]
    assert handbook.media_type.endswith("wordprocessingml.document")
    assert handbook.pages == 0
    headings = [(s.text, s.heading_path) for s in handbook.sections if s.kind == "heading"]
    assert headings == [
        (H["title"], [H["title"]]),
        ("Brood", [H["title"], "Brood"]),
        ("Inspection", [H["title"], "Brood", "Inspection"]),
        ("Calendar", [H["title"], "Brood", "Calendar"]),
    ]
    brood = _with(handbook, H["brood"])
    assert brood.kind == "paragraph" and brood.heading_path == [H["title"], "Brood"]


def test_docx_lists_keep_word_numbers_and_levels(handbook):
    steps = _with(handbook, H["steps"][0])
    assert steps.kind == "list"
    assert steps.text.split("\n") == [
        f"1. {H['steps'][0]}", f"  a) {H['steps'][1]}", f"  b) {H['steps'][2]}",
        f"2. {H['steps'][3]}", "Smoke calms the bees", "Veils protect the face"]


def test_docx_table_rows_stay_together_and_merged_cells_keep_columns(handbook):
    table = _with(handbook, "Month")
    assert table.kind == "table"
    assert table.text.split("\n") == ["Month | Task | Notes", "May | Add supers | Strong flow",
                                      " | Check for swarm cells | Every 7 days"]


def test_docx_text_box_tracked_changes_footnotes_and_what_is_left_out(handbook):
    text = "\n".join(s.text for s in handbook.sections)
    assert text.count(H["box"]) == 1  # stored twice would be read twice
    assert _with(handbook, H["inserted"]).text == f"Swarms leave in spring. {H['inserted']}"
    assert H["deleted"] not in text
    assert any("tracked changes" in w for w in handbook.warnings)
    note = _with(handbook, H["footnote"])
    assert note.heading_path == ["Footnotes"] and note.text == H["footnote"]
    assert H["toc"] not in text  # the table of contents repeats the headings
    assert H["header"] not in text  # running headers repeat on every page


def test_docx_chunks_carry_the_heading_path():
    data = _office.docx_bytes(["Bees fan their wings to cool the hive on hot days. " * 30],
                              title="Cooling")
    doc = DocxParser().parse(data, filename="cooling.docx")
    chunks = StructuredChunker().chunk(doc, options=ChunkOptions(max_tokens=64))
    assert len(chunks) > 1
    assert all(c.heading_path == ["Cooling"] and c.pages == [] for c in chunks)


def test_docx_heading_styles_are_found_by_outline_level_and_in_other_languages():
    """A custom style based on "heading 2", and a paragraph with its own outline level."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    document = docx.Document()
    custom = document.styles.add_style("Kapitel", WD_STYLE_TYPE.PARAGRAPH)
    custom.base_style = document.styles["Heading 2"]
    document.add_paragraph("Überschrift aus eigener Vorlage", style="Kapitel")
    document.add_paragraph("Bienen halten das Brutnest bei etwa 35 Grad warm.")
    own = document.add_paragraph("Gliederungsebene drei")
    own._p.get_or_add_pPr().append(_office._parse(
        f'<w:outlineLvl xmlns:w="{_office.W_NS}" w:val="2"/>'))
    document.add_paragraph("Im Winter bilden sie eine Traube.")
    out = io.BytesIO()
    document.save(out)
    doc = DocxParser().parse(out.getvalue(), filename="bienen.docx")
    headings = [(s.text, s.heading_path) for s in doc.sections if s.kind == "heading"]
    assert headings == [("Überschrift aus eigener Vorlage", ["Überschrift aus eigener Vorlage"]),
                        ("Gliederungsebene drei", ["Überschrift aus eigener Vorlage",
                                                   "Gliederungsebene drei"])]
    assert doc.title == "Überschrift aus eigener Vorlage"  # no core title, no Title style


# --- PowerPoint ------------------------------------------------------------------------


def test_pptx_slides_are_pages_with_titles_bullets_notes_and_tables(talk):
    assert talk.title == "Beekeeping for beginners"
    assert talk.pages == 3
    got = [(s.kind, s.page, s.heading_path, s.text) for s in talk.sections]
    assert got == [
        ("heading", 1, ["Inspecting a hive"], "Inspecting a hive"),
        ("list", 1, ["Inspecting a hive"],
         "Open the lid slowly\n  Use a little smoke\nLift one frame at a time"),
        ("paragraph", 1, ["Inspecting a hive", "Speaker notes"], "Remind everyone to wear a veil."),
        ("paragraph", 2, ["Slide 2"], "The upper box is read first. Its second line follows."),
        ("paragraph", 2, ["Slide 2"], "The lower box is read second."),
        ("table", 2, ["Slide 2"], "Month | Task\nMay | Add supers"),
        ("heading", 3, ["Harvest"], "Harvest"),
        ("paragraph", 3, ["Harvest"], "Take honey only from capped frames."),
    ]  # the footer on slide 3 ("Bee club, 2024") is left out
    assert talk.warnings == ["slide(s) 2 of 3 are hidden; they were read all the same"]


def test_pptx_chunk_lineage_names_the_slides():
    slides = [(f"Topic {n}", f"Slide {n} explains how bees build comb from wax. " * 3)
              for n in range(1, 4)]
    doc = PptxParser().parse(_office.pptx_bytes(slides), filename="deck.pptx")
    chunks = StructuredChunker().chunk(doc, options=ChunkOptions(max_tokens=128))
    assert {tuple(c.pages) for c in chunks} == {(1,), (2,), (3,)}
    for chunk in chunks:
        assert chunk.heading_path == [f"Topic {chunk.pages[0]}"]
        assert f"Slide {chunk.pages[0]} explains" in chunk.text


# --- sniffing ----------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), [
    (_office.docx_bytes(), "docx"),
    (_office.pptx_bytes(), "pptx"),
])
@pytest.mark.parametrize("filename", ["report.pdf", "upload", "notes.txt", "deck.docx"])
def test_office_files_are_recognised_by_content_whatever_their_name(data, expected, filename):
    parser = route(data, filename)
    assert parser is not None and parser.name == expected
    doc = parser.parse(data, filename=filename)
    assert doc.sections


def test_a_renamed_docx_is_read_with_a_mismatch_warning():
    parser = route(_office.docx_bytes(), "report.pdf")
    warning = sniff_mismatch("report.pdf", parser.media_types)
    assert warning == ("the name says application/pdf but the content is application/"
                       "vnd.openxmlformats-officedocument.wordprocessingml.document; read as "
                       "application/vnd.openxmlformats-officedocument.wordprocessingml.document")


def test_other_zip_archives_are_not_claimed():
    from tests._docs import zip_bytes

    assert route(zip_bytes(), "archive.zip") is None
    # a spreadsheet's head names xl/: not claimed, even under a Word name
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    for parser in (DocxParser(), PptxParser()):
        assert parser.sniff(out.getvalue(), "sheet.docx") is False
        assert parser.sniff(out.getvalue(), "sheet.pptx") is False


# --- rejections --------------------------------------------------------------------------


@pytest.mark.parametrize(("parser", "data", "reason", "says"), [
    (DocxParser(), _office.encrypted_bytes(_office.docx_bytes()), RejectionReason.ENCRYPTED,
     "password-protected"),
    (PptxParser(), _office.encrypted_bytes(_office.pptx_bytes()), RejectionReason.ENCRYPTED,
     "password-protected"),
    (DocxParser(), _office.corrupt_docx_bytes(), RejectionReason.CORRUPT, "XMLSyntaxError"),
    (DocxParser(), _office.docx_bytes()[:2000], RejectionReason.CORRUPT, "ZIP archive is damaged"),
    (PptxParser(), b"", RejectionReason.CORRUPT, "empty"),
    (DocxParser(), _office.macro_only_docm_bytes(), RejectionReason.MACRO_ONLY, "only macros"),
    (DocxParser(), _office.empty_docx_bytes(), RejectionReason.NO_TEXT, "has no text"),
    (PptxParser(), _office.empty_pptx_bytes(3), RejectionReason.NO_TEXT, "any of its 3 slide"),
    (DocxParser(), _office.legacy_doc_bytes(), RejectionReason.UNKNOWN_TYPE, "save it as .docx"),
    (PptxParser(), _office.legacy_doc_bytes(), RejectionReason.UNKNOWN_TYPE, "save it as .pptx"),
    (DocxParser(), _office.size_bomb_bytes(_office.docx_bytes()), RejectionReason.TOO_LARGE,
     "ZIP bomb"),
    # a Word package under a deck's parser: its main part is not a presentation
    (PptxParser(), _office.docx_bytes(), RejectionReason.CORRUPT, "not a PowerPoint deck"),
], ids=["encrypted-docx", "encrypted-pptx", "bad-xml", "truncated", "empty", "macro-only",
        "no-text-docx", "no-text-pptx", "legacy-doc", "legacy-ppt", "size-bomb", "wrong-family"])
def test_bad_office_files_are_rejected_with_a_named_reason(parser, data, reason, says):
    with pytest.raises(ParseError) as caught:
        parser.parse(data, filename="input.bin")
    assert caught.value.reason is reason
    assert says in caught.value.detail
    assert "input.bin" in caught.value.detail or reason is RejectionReason.CORRUPT


def test_macros_in_a_document_with_text_are_reported_not_run():
    data = _office.rezip(_office.docx_bytes(), add={"word/vbaProject.bin": b"\x00" * 64})
    doc = DocxParser().parse(data, filename="report.docm")
    assert doc.sections
    assert doc.warnings == ["the file contains macros (a VBA project); they were not run"]


def test_encrypted_office_files_are_claimed_by_content_even_unnamed():
    data = _office.encrypted_bytes(_office.docx_bytes())
    parser = route(data, "upload")
    assert parser is not None and parser.name == "docx"
    assert route(_office.legacy_doc_bytes(), "upload") is None  # nothing says Office


def test_many_parts_are_refused_before_parsing():
    parts = {f"word/media/p{i}.xml": b"" for i in range(_ooxml.MAX_ENTRIES + 1)}
    data = _office.rezip(_office.docx_bytes(), add=parts)
    with pytest.raises(ParseError) as caught:
        DocxParser().parse(data, filename="parts.docx")
    assert caught.value.reason is RejectionReason.TOO_LARGE
    assert "parts.docx holds 20,0" in caught.value.detail
