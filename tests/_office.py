"""Word and PowerPoint files for tests, written on the fly by python-docx and python-pptx.

Where those libraries cannot write a feature (footnotes, text boxes, tracked changes,
a table of contents, macros), the package is edited as Word itself stores it: the XML
goes into the part, and the part into ``[Content_Types].xml`` and the relationships.
Password-protected files are encrypted by msoffcrypto-tool (real ECMA-376 agile
encryption, as Office writes it).
"""

from __future__ import annotations

import io
import struct
import zipfile

__all__ = [
    "HANDBOOK",
    "corrupt_docx_bytes",
    "docx_bytes",
    "empty_docx_bytes",
    "empty_pptx_bytes",
    "encrypted_bytes",
    "handbook_docx_bytes",
    "legacy_doc_bytes",
    "macro_only_docm_bytes",
    "pptx_bytes",
    "rezip",
    "size_bomb_bytes",
    "talk_pptx_bytes",
]

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_FOOTNOTES_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml"
_FOOTNOTES_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/footnotes"
_DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
_DOCM_MAIN = "application/vnd.ms-word.document.macroEnabled.main+xml"

#: what the handbook says, by part (the tests look for each of these)
HANDBOOK = {
    "title": "The Hive Handbook",
    "intro": "Worker bees build comb from wax that they secrete from glands on the abdomen.",
    "brood": "Bees keep the brood nest at about 35 degrees Celsius by shivering their "
             "flight muscles.",
    "steps": ("Open the hive slowly", "Lift the first frame", "Look for eggs",
              "Close the hive"),
    "box": "Text box: never stand in front of the entrance.",
    "inserted": "Inserted by a reviewer.",
    "deleted": "Deleted by a reviewer.",
    "toc": "Contents entry that repeats a heading",
    "footnote": "Measured in a hive in Bavaria in 2023.",
    "header": "Confidential running header",
}


def rezip(data: bytes, *, replace: dict[str, bytes] | None = None,
          add: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> bytes:
    """The ZIP ``data`` with parts replaced, added or dropped (order kept)."""
    replace, add = replace or {}, add or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in drop:
                continue
            dst.writestr(info, replace.get(info.filename, src.read(info.filename)))
        for name, content in add.items():
            dst.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), content)
    return out.getvalue()


def _save(document) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_bytes(paragraphs=("Bees make honey from nectar that they bring back to the hive.",),
               *, title: str | None = None) -> bytes:
    """A plain Word document: an optional Title, then one paragraph per string."""
    import docx

    document = docx.Document()
    if title:
        document.add_heading(title, 0)
    for text in paragraphs:
        document.add_paragraph(text)
    return _save(document)


def _parse(xml: str):
    from docx.oxml.parser import parse_xml

    return parse_xml(xml)


def handbook_docx_bytes() -> bytes:
    """A Word document with every structure the parser keeps or leaves out: core title,
    Title and headings, a numbered list with a nested level, bullets, a table with a
    merged cell, a text box, tracked changes, a table of contents, a footnote and a
    running header."""
    import docx

    h = HANDBOOK
    document = docx.Document()
    document.core_properties.title = h["title"]
    document.sections[0].header.paragraphs[0].text = h["header"]
    body = document.element.body
    toc = _parse(
        f'<w:sdt xmlns:w="{W_NS}"><w:sdtPr><w:docPartObj><w:docPartGallery '
        'w:val="Table of Contents"/></w:docPartObj></w:sdtPr><w:sdtContent><w:p><w:r>'
        f'<w:t>{h["toc"]}</w:t></w:r></w:p></w:sdtContent></w:sdt>')
    document.add_heading(h["title"], 0)
    body.append(toc)
    document.add_heading("Brood", 1)
    document.add_paragraph(h["intro"])
    brood = document.add_paragraph(h["brood"])  # its footnote reference is added below
    document.add_heading("Inspection", 2)
    for index, step in enumerate(h["steps"]):  # a two-level list: "1.", "a)", "b)", "2."
        paragraph = document.add_paragraph(step, style="List Number")
        num_pr = paragraph._p.get_or_add_pPr().get_or_add_numPr()
        num_pr.get_or_add_numId().val = _STEPS_NUM_ID
        num_pr.get_or_add_ilvl().val = 1 if index in (1, 2) else 0
    document.add_paragraph("Smoke calms the bees", style="List Bullet")
    document.add_paragraph("Veils protect the face", style="List Bullet")
    document.add_heading("Calendar", 2)
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate((("Month", "Task", "Notes"), ("May", "Add supers", "Strong flow"),
                             ("", "Check for swarm cells", "Every 7 days"))):
        for c, text in enumerate(row):
            if text:
                table.cell(r, c).text = text
    table.cell(1, 0).merge(table.cell(2, 0))
    anchor = document.add_paragraph("The entrance faces south.")
    anchor._p.append(_parse(
        f'<w:r xmlns:w="{W_NS}" xmlns:v="urn:schemas-microsoft-com:vml"><w:pict><v:shape>'
        f'<v:textbox><w:txbxContent><w:p><w:r><w:t>{h["box"]}</w:t></w:r></w:p>'
        '</w:txbxContent></v:textbox></v:shape></w:pict></w:r>'))
    changed = document.add_paragraph("Swarms leave in spring. ")
    changed._p.append(_parse(f'<w:ins xmlns:w="{W_NS}" w:id="1" w:author="r"><w:r><w:t>'
                             f'{h["inserted"]}</w:t></w:r></w:ins>'))
    changed._p.append(_parse(f'<w:del xmlns:w="{W_NS}" w:id="2" w:author="r"><w:r><w:delText>'
                             f'{h["deleted"]}</w:delText></w:r></w:del>'))
    brood._p.append(_parse(f'<w:r xmlns:w="{W_NS}"><w:footnoteReference w:id="1"/></w:r>'))
    data = _save(document)
    return _add_steps_numbering(_add_footnote(data, h["footnote"]))


_STEPS_NUM_ID = 90


def _add_steps_numbering(data: bytes) -> bytes:
    """A multilevel list definition ("%1." decimal, then "%2)" lowerLetter) as numId 90."""
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        numbering = src.read("word/numbering.xml").decode()
    levels = "".join(
        f'<w:lvl w:ilvl="{i}"><w:start w:val="1"/><w:numFmt w:val="{fmt}"/>'
        f'<w:lvlText w:val="{text}"/></w:lvl>'
        for i, (fmt, text) in enumerate((("decimal", "%1."), ("lowerLetter", "%2)"))))
    abstract = f'<w:abstractNum w:abstractNumId="90">{levels}</w:abstractNum>'
    at = numbering.index("<w:num ")
    numbering = (numbering[:at] + abstract + numbering[at:]).replace(
        "</w:numbering>", f'<w:num w:numId="{_STEPS_NUM_ID}"><w:abstractNumId w:val="90"/>'
                          "</w:num></w:numbering>")
    return rezip(data, replace={"word/numbering.xml": numbering.encode()})


def _add_footnote(data: bytes, text: str) -> bytes:
    footnotes = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:footnotes xmlns:w="{W_NS}">'
        '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p>'
        '</w:footnote><w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r>'
        '<w:continuationSeparator/></w:r></w:p></w:footnote><w:footnote w:id="1"><w:p><w:r>'
        f'<w:footnoteRef/></w:r><w:r><w:t xml:space="preserve"> {text}</w:t></w:r></w:p>'
        '</w:footnote></w:footnotes>').encode()
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        types = src.read("[Content_Types].xml").decode()
        rels = src.read("word/_rels/document.xml.rels").decode()
    types = types.replace("</Types>", f'<Override PartName="/word/footnotes.xml" '
                                      f'ContentType="{_FOOTNOTES_TYPE}"/></Types>')
    rels = rels.replace("</Relationships>", f'<Relationship Id="rIdFn1" Type="{_FOOTNOTES_REL}" '
                                            'Target="footnotes.xml"/></Relationships>')
    return rezip(data, replace={"[Content_Types].xml": types.encode(),
                                "word/_rels/document.xml.rels": rels.encode()},
                 add={"word/footnotes.xml": footnotes})


def empty_docx_bytes() -> bytes:
    """A Word document with no text at all (python-docx's blank template)."""
    import docx

    return _save(docx.Document())


def macro_only_docm_bytes() -> bytes:
    """A macro-enabled Word document (``.docm``) with a VBA project and no text."""
    data = empty_docx_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        types = src.read("[Content_Types].xml").decode()
    types = types.replace(_DOCX_MAIN, _DOCM_MAIN).replace(
        "</Types>", '<Default Extension="bin" ContentType="application/vnd.ms-office.'
                    'vbaProject"/></Types>')
    # the project's bytes are never read, only its presence is noticed
    project = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + b"Attribute VB_Name"
    return rezip(data, replace={"[Content_Types].xml": types.encode()},
                 add={"word/vbaProject.bin": project})


def corrupt_docx_bytes() -> bytes:
    """A Word document whose main part is not well-formed XML."""
    data = docx_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        xml = src.read("word/document.xml")
    return rezip(data, replace={"word/document.xml": xml[: len(xml) // 2]})


def encrypted_bytes(data: bytes, password: str = "secret") -> bytes:
    """``data`` (an OOXML file) encrypted with ``password``, as Office does it."""
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(data)).encrypt(password, out)
    return out.getvalue()


def legacy_doc_bytes() -> bytes:
    """The start of a legacy binary Office file: an OLE compound file header, no
    ``EncryptedPackage`` stream."""
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 16 + struct.pack("<HH", 0x3E, 3)
    return header + b"\x00" * (4096 - len(header)) + "WordDocument".encode("utf-16-le")


def size_bomb_bytes(data: bytes, size: int = 4 << 30) -> bytes:
    """``data`` (a ZIP) whose first entry's central-directory header declares ``size``
    uncompressed bytes: what a ZIP bomb says about itself."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    out[at + 24: at + 28] = struct.pack("<I", min(size, 0xFFFFFFFF))
    return bytes(out)


def talk_pptx_bytes(*, hidden: int | None = None) -> bytes:
    """A three-slide deck: a titled slide with bullets at two levels and speaker notes, an
    untitled slide with two text boxes (the lower one added first) and a table, and a
    titled slide with a footer and a slide-number placeholder. ``hidden`` hides a slide."""
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    deck.core_properties.title = "Beekeeping for beginners"
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Inspecting a hive"
    frame = slide.placeholders[1].text_frame
    frame.text = "Open the lid slowly"
    for text, level in (("Use a little smoke", 1), ("Lift one frame at a time", 0)):
        paragraph = frame.add_paragraph()
        paragraph.text, paragraph.level = text, level
    slide.notes_slide.notes_text_frame.text = "Remind everyone to wear a veil."
    slide = deck.slides.add_slide(deck.slide_layouts[6])
    lower = slide.shapes.add_textbox(Inches(1), Inches(3), Inches(6), Inches(1))
    lower.text_frame.text = "The lower box is read second."
    upper = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(6), Inches(1))
    upper.text_frame.text = "The upper box is read first.\vIts second line follows."
    table = slide.shapes.add_table(2, 2, Inches(1), Inches(5), Inches(6), Inches(1)).table
    for (r, c), text in {(0, 0): "Month", (0, 1): "Task", (1, 0): "May",
                         (1, 1): "Add supers"}.items():
        table.cell(r, c).text = text
    slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    slide.shapes.title.text = "Harvest"
    box = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(6), Inches(1))
    box.text_frame.text = "Take honey only from capped frames."
    _add_footer(slide, "Bee club, 2024")
    if hidden is not None:
        deck.slides[hidden - 1]._element.set("show", "0")
    return _save(deck)


def _add_footer(slide, text: str) -> None:
    """A footer placeholder (python-pptx adds none on its own), as PowerPoint writes it."""
    from pptx.oxml import parse_xml

    shape = parse_xml(
        '<p:sp xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" '
        'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"><p:nvSpPr>'
        '<p:cNvPr id="99" name="Footer"/><p:cNvSpPr/><p:nvPr><p:ph type="ftr" sz="quarter" '
        'idx="11"/></p:nvPr></p:nvSpPr><p:spPr/><p:txBody><a:bodyPr/><a:p><a:r><a:t>'
        f'{text}</a:t></a:r></a:p></p:txBody></p:sp>')
    slide.shapes._spTree.append(shape)


def pptx_bytes(slides=(("Bees", "Bees make honey from nectar that they bring back."),)) -> bytes:
    """A deck of (title, body) slides on the title-and-content layout."""
    import pptx

    deck = pptx.Presentation()
    for title, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text_frame.text = body
    return _save(deck)


def empty_pptx_bytes(slides: int = 2) -> bytes:
    """A deck of ``slides`` blank slides."""
    import pptx

    deck = pptx.Presentation()
    for _ in range(slides):
        deck.slides.add_slide(deck.slide_layouts[6])
    return _save(deck)
