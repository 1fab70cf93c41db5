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


# --- odd but valid files, and hostile ones (found in review) ---------------------------

_MC_NS = "http://schemas.openxmlformats.org/markup-compatibility/2006"
_P_NS = ('xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" '
         'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"')


def _docx_with_body(xml: str, styles: tuple[str, ...] = ()) -> bytes:
    """A Word document whose body is ``xml`` (Word's namespaces declared), with paragraph
    ``styles`` added by name."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    document = docx.Document()
    for name in styles:
        document.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
    body = document.element.body
    wrapper = _office._parse(f'<w:body xmlns:w="{_office.W_NS}" xmlns:mc="{_MC_NS}">{xml}'
                             "</w:body>")
    end = body.find(f"{{{_office.W_NS}}}sectPr")
    for child in list(wrapper):
        end.addprevious(child)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _para(text: str, extra: str = "", style: str | None = None) -> str:
    props = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return f"<w:p>{props}<w:r>{extra}<w:t>{text}</w:t></w:r></w:p>"


def test_docx_reads_the_first_alternative_only_and_leaves_hidden_text_out():
    data = _docx_with_body(
        "<mc:AlternateContent><mc:Choice Requires=\"w14\">" + _para("Choice one is read.")
        + "</mc:Choice><mc:Choice Requires=\"w15\">" + _para("Choice two is not.")
        + "</mc:Choice><mc:Fallback>" + _para("Fallback is not.") + "</mc:Fallback>"
        "</mc:AlternateContent>"
        + _para("Hidden text is not shown.", "<w:rPr><w:vanish/></w:rPr>")
        + _para("Worker bees build comb from wax that they secrete."))
    text = [s.text for s in DocxParser().parse(data, filename="alt.docx").sections]
    assert text == ["Choice one is read.", "Worker bees build comb from wax that they secrete."]


def test_docx_table_of_contents_paragraphs_are_left_out():
    data = _docx_with_body(_para("Brood 3", style="toc1") + _para("The brood nest is warm."),
                           styles=("toc 1",))
    doc = DocxParser().parse(data, filename="toc.docx")
    assert [s.text for s in doc.sections] == ["The brood nest is warm."]


def test_docx_without_a_body_has_no_text_and_a_given_name_is_never_the_title():
    data = _office.docx_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        xml = archive.read("word/document.xml").decode()
    start, end = xml.index("<w:body"), xml.index("</w:body>") + len("</w:body>")
    bodyless = _office.rezip(data, replace={"word/document.xml": (xml[:start]
                                                                  + xml[end:]).encode()})
    with pytest.raises(ParseError) as caught:
        DocxParser().parse(bodyless, filename="bodyless.docx")
    assert caught.value.reason is RejectionReason.NO_TEXT
    # body text and a footnote: the "Footnotes" path is no title
    noted = DocxParser().parse(_office.handbook_docx_bytes(), filename="h.docx")
    assert noted.title == H["title"]
    plain = DocxParser().parse(_office.docx_bytes(), filename="plain.docx")
    assert plain.title is None


def test_docx_list_start_values_are_word_s_and_bounded():
    data = _office.handbook_docx_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        numbering = archive.read("word/numbering.xml").decode()
    at = numbering.index('<w:abstractNum w:abstractNumId="90">')
    for start, first in (("0", "0."), ("300000000", "32767.")):
        edited = numbering[:at] + numbering[at:].replace('w:val="1"', f'w:val="{start}"', 1)
        doc = DocxParser().parse(_office.rezip(data, replace={
            "word/numbering.xml": edited.encode()}), filename="start.docx")
        steps = _with(doc, H["steps"][0])
        assert steps.text.split("\n")[0] == f"{first} {H['steps'][0]}"


def test_pptx_title_is_found_by_type_and_unreadable_shapes_are_counted():
    import pptx
    from pptx.oxml import parse_xml

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Harvest time"
    slide.shapes.title._element.nvSpPr.nvPr.ph.set("idx", "7")
    slide.shapes._spTree.append(parse_xml(
        f'<p:sp {_P_NS}><p:nvSpPr><p:cNvPr id="5" name="x"/><p:cNvSpPr/><p:nvPr/></p:nvSpPr>'
        '<p:spPr/><p:txBody><a:bodyPr/><a:p><a:r><a:t>No geometry</a:t></a:r></a:p>'
        '</p:txBody></p:sp>'))
    box = slide.shapes.add_textbox(0, 0, 100, 100)
    box.text_frame.text = "Take honey only from capped frames."
    untitled = deck.slides.add_slide(deck.slide_layouts[6])
    untitled.shapes.add_textbox(0, 0, 100, 100).text_frame.text = "An untitled slide."
    out = io.BytesIO()
    deck.save(out)
    doc = PptxParser().parse(out.getvalue(), filename="odd.pptx")
    assert doc.title == "Harvest time"
    texts = [s.text for s in doc.sections]
    assert texts[0] == "Harvest time" and "Take honey only from capped frames." in texts
    assert texts == ["Harvest time", "Take honey only from capped frames.", "An untitled slide."]
    assert doc.warnings == ["1 shape(s) on slide(s) 1 could not be read (python-pptx has no "
                            "reader for them) and were left out"]


def test_compression_methods_office_never_writes_and_huge_xml_are_refused():
    data = _office.docx_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename),
                         compress_type=zipfile.ZIP_LZMA)
    with pytest.raises(ParseError) as caught:
        DocxParser().parse(out.getvalue(), filename="lzma.docx")
    assert caught.value.reason is RejectionReason.CORRUPT
    assert "compression method 14" in caught.value.detail
    with pytest.raises(ParseError) as caught:
        DocxParser().parse(_office.size_bomb_bytes(data, size=_ooxml.MAX_XML_BYTES + 1),
                           filename="xml.docx")
    assert caught.value.reason is RejectionReason.TOO_LARGE
    assert "XML would unpack to" in caught.value.detail
