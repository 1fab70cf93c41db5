"""The built-in parser plugins, on the example documents and on bad input."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
import time
from pathlib import Path

import pluggy
import pytest

from syllabus.contracts import (
    PROJECT,
    ChunkOptions,
    ParsedDocument,
    ParseError,
    Parser,
    RejectionReason,
    hookspecs,
)
from syllabus.plugins.chunkers.structured import StructuredChunker
from syllabus.plugins.parsers.docx import DocxParser
from syllabus.plugins.parsers.html import HtmlParser
from syllabus.plugins.parsers.markdown import MarkdownParser
from syllabus.plugins.parsers.pdf import PdfParser
from syllabus.plugins.parsers.pptx import PptxParser
from syllabus.plugins.parsers.text import TextParser
from syllabus.services.ingest._documents import (
    Rejection,
    check_filename,
    detect_parser,
    sniff_mismatch,
)
from syllabus.services.runtime import Registered
from tests import _docs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "bees"
EXAMPLES_DOCS = ROOT / "examples"  # README.md and LICENSE.md
PARSER_NAMES = ("pdf", "html", "markdown", "text", "docx", "pptx")
PARSERS = sorted([PdfParser(), HtmlParser(), MarkdownParser(), TextParser(), DocxParser(),
                  PptxParser()],
                 key=lambda p: p.priority, reverse=True)
SNIFF_BYTES = 8192
DEFAULT_PAGE_TEXT = _docs.DEFAULT_PAGES


def route(data: bytes, filename: str) -> Parser | None:
    """What the ingest service does: the highest-priority parser that sniffs the head."""
    return next((p for p in PARSERS if p.sniff(data[:SNIFF_BYTES], filename)), None)


def parse_example(name: str) -> ParsedDocument:
    data = (EXAMPLES / name).read_bytes()
    parser = route(data, name)
    assert parser is not None, f"no parser sniffed {name}"
    return parser.parse(data, filename=name)


def all_text(doc: ParsedDocument) -> str:
    return "\n\n".join(section.text for section in doc.sections)


def section_with(doc: ParsedDocument, phrase: str):
    found = [s for s in doc.sections if phrase in s.text]
    assert found, f"no section contains {phrase!r}"
    return found[0]


# --- loading through the real entry points ---------------------------------------------


def test_entry_points_name_the_parser_modules():
    entry_points = {ep.name: ep for ep in importlib.metadata.entry_points(group=PROJECT)}
    for name in PARSER_NAMES:
        assert entry_points[name].value == f"syllabus.plugins.parsers.{name}"


@pytest.mark.parametrize("name", PARSER_NAMES)
def test_each_module_registers_one_parser_object(name):
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group=PROJECT)
                      if ep.name == name]
    module = entry_point.load()
    assert module.__doc__ and module.__doc__.strip()
    registered = []
    module.register_parsers(registered.append)
    assert len(registered) == 1
    parser = registered[0]
    assert isinstance(parser, Parser)
    assert parser.name == name
    assert isinstance(parser.media_types, tuple) and parser.media_types
    assert all("/" in media_type for media_type in parser.media_types)
    assert isinstance(parser.priority, int)


def test_a_plugin_manager_loads_them_through_the_hook():
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    for entry_point in importlib.metadata.entry_points(group=PROJECT):
        if entry_point.name in PARSER_NAMES:
            manager.register(entry_point.load(), name=entry_point.name)
    manager.check_pending()
    registered = []
    manager.hook.register_parsers(register=registered.append)
    by_name = {parser.name: parser for parser in registered}
    assert sorted(by_name) == sorted(PARSER_NAMES)
    assert (by_name["pdf"].priority > by_name["html"].priority
            > by_name["markdown"].priority > by_name["text"].priority)


def test_parser_modules_do_not_import_the_services():
    for name in PARSER_NAMES:
        source = (ROOT / "plugins" / "parsers" / f"{name}.py").read_text()
        assert "syllabus.services" not in source
        assert "register_parsers" in source and "@hookimpl" in source


# --- sniffing --------------------------------------------------------------------------

EXPECTED_PARSER = {
    "honeybee-colony.pdf": "pdf",
    "varroa-management.pdf": "pdf",
    "how-bees-make-honey.html": "html",
    "foragers-waggle-dance.html": "html",
    "preparing-for-winter.md": "markdown",
    "swarming.md": "markdown",
    "waggle-dance-repost.md": "markdown",
    "apiary-calendar.txt": "text",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARSER))
def test_examples_are_routed_to_the_right_parser(name):
    data = (EXAMPLES / name).read_bytes()
    assert route(data, name).name == EXPECTED_PARSER[name]
    # by content alone, too: the file name is only a hint
    assert route(data, "upload").name == EXPECTED_PARSER[name]


@pytest.mark.parametrize("data", [
    _docs.png_bytes(),
    _docs.zip_bytes(),
    bytes((i * 7919 + 13) % 256 for i in range(4096)),
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(1, 200)),  # gzip header
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + bytes(200),  # JPEG header
    b"",
], ids=["png", "zip", "random", "gzip", "jpeg", "zero-bytes"])
@pytest.mark.parametrize("filename", ["upload", "notes.txt", "page.html", "readme.md"])
def test_binary_and_empty_input_is_sniffed_by_no_parser(data, filename):
    assert [p.name for p in PARSERS if p.sniff(data[:SNIFF_BYTES], filename)] == []


def test_pdf_sniff_finds_the_header_within_1024_bytes():
    parser = PdfParser()
    assert parser.sniff(b"%PDF-1.7\n...", "x")
    assert parser.sniff(b"\n" * 1000 + b"%PDF-1.4", "x")
    assert not parser.sniff(b" " * 1100 + b"%PDF-1.4", "x.pdf")
    assert not parser.sniff(b"Just some text about PDF files.", "x.pdf")


@pytest.mark.parametrize("head", [
    b"<!DOCTYPE html><html><body>x</body></html>",
    b"<!doctype HTML>\n<title>x</title>",
    b"\xef\xbb\xbf  \n<html lang=en>",
    b"<!-- generated -->\n<HTML>",
    b"\n\n   <head><title>x</title></head>",
    b"<body><p>x</p></body>",
    b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml">',
    b"\xff\xfe" + "<html><body>x</body></html>".encode("utf-16-le"),
])
def test_html_sniff(head):
    assert HtmlParser().sniff(head, "upload")


def test_html_sniff_uses_the_extension_only_with_markup():
    parser = HtmlParser()
    assert parser.sniff(b"<div><p>A fragment saved as HTML.</p></div>", "fragment.html")
    assert not parser.sniff(b"<div><p>A fragment.</p></div>", "fragment.txt")
    assert not parser.sniff(b"Plain words, no markup at all.", "page.html")
    assert not parser.sniff(b"# Title\n\nSome *markdown* with <b>html</b>.", "upload")


def test_markdown_sniff_by_extension_and_by_content():
    parser = MarkdownParser()
    assert parser.sniff(b"Anything at all", "notes.md")
    assert parser.sniff(b"Anything at all", "NOTES.MARKDOWN")
    assert parser.sniff(b"# Title\n\nSome text.\n\n## Part two\n\nMore.", "upload")
    assert parser.sniff(b"Title\n=====\n\nSee [the docs](http://x.org) for more.", "upload")
    assert not parser.sniff(b"Just one paragraph of prose.\n\nAnd another.", "upload")
    assert not parser.sniff(b"#!/bin/sh\n# set up\n# and run\necho hi\n", "run")
    assert not parser.sniff(b"\x00\x01binary", "notes.md")
    assert not parser.sniff("Caf\u00e9".encode("latin-1") + b"\n# Title\n## Two", "upload")


def test_text_sniff():
    parser = TextParser()
    assert parser.sniff(b"Plain prose.\n\nSecond paragraph.", "upload")
    assert parser.sniff("Caf\u00e9 cr\u00e8me au miel.".encode("cp1252"), "upload")
    assert parser.sniff("UTF-16 text".encode("utf-16"), "upload")
    # a multi-byte character cut off by the 8 KiB head is not an error
    assert parser.sniff(("\u00e9" * 5000).encode("utf-8")[:SNIFF_BYTES - 1], "upload")
    assert not parser.sniff(b"text with a NUL\x00 byte", "x.txt")
    assert not parser.sniff(b"\x01\x02\x03\x04 mostly control \x05\x06\x07\x08", "x.txt")


# --- PDF -------------------------------------------------------------------------------


def test_pdf_example_has_one_section_per_page():
    doc = parse_example("honeybee-colony.pdf")
    assert doc.media_type == "application/pdf"
    assert doc.pages == 3
    assert [s.page for s in doc.sections] == [1, 2, 3]
    assert {s.kind for s in doc.sections} == {"page"}
    assert doc.title == "The Honeybee Colony: Castes, Development and Division of Labour"
    assert "Three kinds of bee" in doc.sections[0].text
    assert "royal jelly" in doc.sections[1].text
    assert "age polyethism" in doc.sections[2].text.replace("\n", " ")
    assert "royal jelly" not in doc.sections[0].text + doc.sections[2].text


def test_pdf_keeps_running_header_footer_and_line_end_hyphens_for_the_chunker():
    doc = parse_example("honeybee-colony.pdf")
    for number, section in enumerate(doc.sections, start=1):
        assert "\r" not in section.text and "\ufffe" not in section.text
        assert "\x02" not in section.text
        assert section.text.startswith("Apiary Notes - Honeybee Biology Series, Leaflet 1\n")
        assert section.text.rstrip().endswith(f"Page {number} of 3")
    # pdfium reports "in-/creases" as one word with U+FFFE; the parser writes it back
    assert "in-\ncreases" in doc.sections[1].text
    assert "des-\ntined" in doc.sections[1].text


def test_second_pdf_example():
    doc = parse_example("varroa-management.pdf")
    assert doc.pages == 3
    assert "alcohol wash" in doc.sections[1].text
    assert "Oxalic acid" in doc.sections[2].text
    assert all("Bee Health Series, Leaflet 4" in s.text for s in doc.sections)
    assert re.search(r"[a-z]-\n[a-z]", doc.sections[2].text), "no hyphenated line end"


def test_pdf_with_given_page_texts():
    pages = ["Alpha page about comb.", "Beta page about brood.", "Gamma page about bees."]
    doc = PdfParser().parse(_docs.pdf_bytes(pages, title="Three pages"), filename="t.pdf")
    assert doc.pages == 3
    assert doc.title == "Three pages"
    assert [(s.page, s.text.strip()) for s in doc.sections] == list(enumerate(pages, start=1))
    assert doc.warnings == []


def test_pdf_blank_pages_are_counted_but_have_no_section():
    doc = PdfParser().parse(_docs.pdf_bytes(["First.", "", "Third."]), filename="t.pdf")
    assert doc.pages == 3
    assert [s.page for s in doc.sections] == [1, 3]


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_encrypted_pdf_is_rejected(algorithm):
    with pytest.raises(ParseError) as caught:
        PdfParser().parse(_docs.encrypted_pdf_bytes(algorithm=algorithm), filename="e.pdf")
    assert caught.value.reason is RejectionReason.ENCRYPTED
    assert "password" in caught.value.detail


def test_pdf_with_only_an_owner_password_opens():
    doc = PdfParser().parse(_docs.owner_password_pdf_bytes(), filename="o.pdf")
    assert doc.pages == 3
    assert "Propolis" in doc.sections[1].text


def test_pdf_cut_in_half_is_corrupt():
    with pytest.raises(ParseError) as caught:
        PdfParser().parse(_docs.truncated_pdf_bytes(), filename="t.pdf")
    assert caught.value.reason is RejectionReason.CORRUPT
    assert "truncated" in caught.value.detail


def test_pdf_that_lost_only_its_trailer_end_is_recovered_with_a_warning():
    doc = PdfParser().parse(_docs.tail_truncated_pdf_bytes(), filename="t.pdf")
    assert doc.pages == 3
    assert "Drones gather" in doc.sections[2].text
    assert len(doc.warnings) == 1
    assert "truncated" in doc.warnings[0] and "pypdfium2" in doc.warnings[0]


def test_pdf_only_pypdf_can_open_falls_back_with_a_warning():
    doc = PdfParser().parse(_docs.damaged_pdf_bytes(), filename="d.pdf")
    assert doc.pages == 3
    assert [s.page for s in doc.sections] == [1, 2, 3]
    assert "Propolis is a resin" in doc.sections[1].text
    assert any("pypdfium2 could not open" in w and "pypdf" in w for w in doc.warnings)


def test_pdf_with_one_broken_page_keeps_the_others():
    doc = PdfParser().parse(_docs.broken_page_pdf_bytes(broken=2), filename="b.pdf")
    assert doc.pages == 3
    assert [s.page for s in doc.sections] == [1, 3]
    assert doc.warnings == ["pypdfium2 could not read page(s) 2"]


def test_garbage_after_a_pdf_header_is_corrupt():
    with pytest.raises(ParseError) as caught:
        PdfParser().parse(_docs.corrupt_pdf_bytes(), filename="g.pdf")
    assert caught.value.reason is RejectionReason.CORRUPT


def test_scanned_pdf_has_no_text_layer():
    data = _docs.scanned_pdf_bytes(pages=2)
    assert b"/Subtype /Image" in data  # really an image, not an empty page
    with pytest.raises(ParseError) as caught:
        PdfParser(ocr=False).parse(data, filename="s.pdf")
    assert caught.value.reason is RejectionReason.NO_TEXT_LAYER
    assert "OCR is not enabled" in caught.value.detail


@pytest.mark.parametrize("stamp", [None, "{page}", "- {page} -", "Page {page} of 3", " ",
                                   "Scanned with CamScanner"])
def test_scanned_pdf_with_a_stray_line_of_text_has_no_text_layer(stamp):
    """A picture of text on every page, plus at most a page number or a scanner's stamp:
    there is no text to ingest, so it is refused, not "ingested" with 0 chunks."""
    data = _docs.scan_pdf_bytes((None, None, None), stamp=stamp)
    assert data.count(b"/Subtype /Image") == 1 and data.count(b"/Type /Page\n") == 3
    with pytest.raises(ParseError) as caught:
        PdfParser(ocr=False).parse(data, filename="minutes-scan.pdf")
    assert caught.value.reason is RejectionReason.NO_TEXT_LAYER
    detail = caught.value.detail
    assert "minutes-scan.pdf" in detail
    assert "3 of 3 page(s)" in detail
    assert "OCR is not enabled" in detail


def test_pdf_with_some_scanned_pages_keeps_the_text_pages_and_names_the_others():
    pages = (DEFAULT_PAGE_TEXT[0], None, DEFAULT_PAGE_TEXT[1], None, None)
    doc = PdfParser(ocr=False).parse(_docs.scan_pdf_bytes(pages, stamp="{page}"), filename="mixed.pdf")
    assert doc.pages == 5
    assert [s.page for s in doc.sections if len(s.text) > 5] == [1, 3]
    (warning,) = [w for w in doc.warnings if "text layer" in w]
    assert "page(s) 2, 4-5" in warning
    assert "OCR is not enabled" in warning
    assert "1" not in warning.replace("page(s) 2, 4-5", "")  # only the scanned pages


def test_scanned_pages_are_found_on_the_pypdf_fallback_too():
    def without_root(data: bytes) -> bytes:  # as _docs.damaged_pdf_bytes: pdfium refuses it
        return re.sub(rb"/Root \d+ 0 R", lambda m: b" " * len(m.group()), data, count=1)

    with pytest.raises(ParseError) as caught:
        PdfParser().parse(without_root(_docs.scan_pdf_bytes((None, None), stamp="{page}")),
                          filename="scan.pdf")
    assert caught.value.reason is RejectionReason.NO_TEXT_LAYER
    assert "2 of 2 page(s)" in caught.value.detail and "pypdf" in caught.value.detail
    doc = PdfParser().parse(without_root(_docs.scan_pdf_bytes((DEFAULT_PAGE_TEXT[0], None))),
                            filename="mixed.pdf")
    assert any("page(s) 2 of 2 are images" in w for w in doc.warnings), doc.warnings


def test_pdf_with_a_short_text_page_and_no_images_is_not_called_scanned():
    doc = PdfParser().parse(_docs.pdf_bytes(["Contents", DEFAULT_PAGE_TEXT[0]]),
                            filename="short.pdf")
    assert [s.text for s in doc.sections][0] == "Contents"
    assert doc.warnings == []


def test_pdf_that_lies_about_its_page_count_gives_a_short_warning():
    """``/Count 1000000`` over one page: pdfium reports a million pages, of which only the
    first loads. The warning names the lost ones as a range; it must stay small, as it
    travels in a NATS message (1 MB at most)."""
    started = time.perf_counter()
    doc = PdfParser().parse(_docs.page_count_lie_pdf_bytes(1_000_000), filename="lie.pdf")
    assert time.perf_counter() - started < 10
    assert "Worker bees" in doc.sections[0].text
    assert len(doc.sections) == 1
    assert sum(len(w) for w in doc.warnings) < 500
    assert any("2-1000000" in w for w in doc.warnings), doc.warnings


def test_pdf_with_hostile_structure_is_read_or_refused_by_name():
    # pdfium gives up on a page tree nested deeper than 1024, pypdf on one deeper than 100
    with pytest.raises(ParseError) as caught:
        PdfParser().parse(_docs.deep_page_tree_pdf_bytes(5000), filename="deep.pdf")
    assert caught.value.reason is RejectionReason.CORRUPT
    # a form that draws itself, and 20,000 nested bookmarks, do not stop the text
    for data in (_docs.self_drawing_form_pdf_bytes(), _docs.deep_outline_pdf_bytes(20_000)):
        doc = PdfParser().parse(data, filename="hostile.pdf")
        assert "Worker bees build comb" in all_text(doc)


def test_pdf_parser_survives_zero_bytes():
    with pytest.raises(ParseError) as caught:
        PdfParser().parse(b"", filename="z.pdf")
    assert caught.value.reason is RejectionReason.CORRUPT


def test_example_pdfs_are_reproducible_and_current(monkeypatch):
    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "tools/make_examples.py")
    make_examples = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_examples", make_examples)  # for its dataclass
    spec.loader.exec_module(make_examples)
    for booklet in make_examples.BOOKLETS:
        first, second = make_examples.build(booklet), make_examples.build(booklet)
        assert first == second, f"{booklet.filename} is not deterministic"
        fresh = PdfParser().parse(first, filename=booklet.filename)
        committed = parse_example(booklet.filename)
        assert [s.text for s in fresh.sections] == [s.text for s in committed.sections], (
            f"examples/{booklet.filename} is stale: run python tools/make_examples.py")


# --- HTML ------------------------------------------------------------------------------

HONEY_BOILERPLATE = (
    "We use cookies", "Accept all", "Manage preferences", "Members' shop", "Swarm hotline",
    "Search the site", "Subscribe to our newsletter", "Upcoming events", "Popular posts",
    "You might also like", "Share this article", "Registered charity", "Privacy policy",
    "Hivemind Design", "9 minute read",
)
WAGGLE_BOILERPLATE = (
    "stores cookies", "cookie policy", "I agree", "Photo gallery", "About the author",
    "14 comments", "Lovely explanation", "About this blog", "Archives", "Buy my honey",
    "Powered by", "RSS feed", "Tags:",
)


def test_html_example_keeps_the_article_and_drops_the_boilerplate():
    doc = parse_example("how-bees-make-honey.html")
    text = all_text(doc)
    assert doc.media_type == "text/html"
    assert doc.title == "From Nectar to Honey: How Bees Make Honey"  # og:title, no site name
    for phrase in ("trophallaxis", "invertase", "eighteen percent water", "black locust",
                   "feeding sugar syrup in autumn"):
        assert phrase in text
    for phrase in HONEY_BOILERPLATE:
        assert phrase not in text, phrase
    title = "From Nectar to Honey: How Bees Make Honey"
    assert doc.sections[0].kind == "heading" and doc.sections[0].heading_path == [title]
    assert section_with(doc, "invertase").heading_path == [title, "Enzymes change the sugars"]
    assert section_with(doc, "invertase").kind == "paragraph"
    headings = [s.text for s in doc.sections if s.kind == "heading"]
    assert headings == [title, "Collecting nectar", "Passing the load along",
                        "Enzymes change the sugars", "Drying and capping", "Why honey varies",
                        "How much honey does a colony need?"]


def test_second_html_example_nests_h3_under_h2():
    doc = parse_example("foragers-waggle-dance.html")
    text = all_text(doc)
    for phrase in WAGGLE_BOILERPLATE:
        assert phrase not in text, phrase
    title = "The Waggle Dance: How Foragers Share Directions"
    assert doc.title == title
    assert section_with(doc, "optical odometer").heading_path == [
        title, "Decoding the dance", "Distance"]
    assert section_with(doc, "stop signal").heading_path == [title, "Dancing for a new home"]
    assert "Karl von Frisch" in text


LONG_PAGE = """
<header class="site-header"><nav><a href="/">Home</a> <a href="/shop">Visit the shop</a></nav></header>
<div id="cookie-notice">We use cookies to personalise content. Accept cookies?</div>
<main><article>
<h1>Hive products</h1>
<p>Beeswax is secreted as thin scales by glands on the underside of young workers' abdomens,
and the bees chew and shape the scales into the hexagonal cells of the comb.</p>
<h2>Uses of beeswax</h2>
<ul><li>Candles that burn with a bright flame</li><li>Polish for wooden furniture
<ul><li>mixed with turpentine</li></ul></li></ul>
<h2>Yields</h2>
<table><tr><th>Product</th><th>Typical yield</th></tr>
<tr><td>Honey</td><td>Varies widely by season and forage</td></tr>
<tr><td>Wax</td><td>A small fraction of the honey crop</td></tr></table>
<h3>Measuring moisture</h3>
<pre><code>reading = refractometer(sample)
assert reading &lt; 18.0</code></pre>
<p>Propolis, a resin gathered from tree buds, is used by the colony to seal small gaps and
to varnish the inside of the nest cavity, and it has mild antimicrobial properties.</p>
</article></main>
<footer class="site-footer">Copyright Example Apiaries. Terms and conditions apply.</footer>
"""


def test_html_lists_tables_and_code_become_their_own_sections():
    doc = HtmlParser().parse(_docs.html_bytes(LONG_PAGE, title="Hive products | Example"),
                             filename="p.html")
    kinds = {s.kind: s for s in reversed(doc.sections)}
    assert kinds["list"].text == ("Candles that burn with a bright flame\n"
                                  "Polish for wooden furniture\n  mixed with turpentine")
    assert kinds["list"].heading_path == ["Hive products", "Uses of beeswax"]
    assert kinds["table"].text.splitlines() == [
        "Product | Typical yield", "Honey | Varies widely by season and forage",
        "Wax | A small fraction of the honey crop"]
    assert "refractometer(sample)" in kinds["code"].text
    assert kinds["code"].heading_path == ["Hive products", "Yields", "Measuring moisture"]
    assert doc.title == "Hive products | Example"
    text = all_text(doc)
    assert "Visit the shop" not in text and "cookies" not in text and "Copyright" not in text


def test_short_html_page_keeps_headings_and_drops_furniture():
    # trafilatura's baseline would flatten this page into one paragraph
    page = ('<div class="has-sidebar"><header><a href="/">Logo</a></header>'
            '<div id="cookie-banner"><p>We use cookies. Accept all</p></div>'
            "<article><header><h1>Hive</h1></header><p>Wax comb.</p><h2>Sub</h2>"
            '<p>More text here.</p><div class="share">Share on Facebook</div></article>'
            "<aside><h3>Popular posts</h3></aside></div><footer>Site footer text</footer>")
    doc = HtmlParser().parse(_docs.html_bytes(page), filename="s.html")
    assert [(s.kind, s.heading_path, s.text) for s in doc.sections] == [
        ("heading", ["Hive"], "Hive"),
        ("paragraph", ["Hive"], "Wax comb."),
        ("heading", ["Hive", "Sub"], "Sub"),
        ("paragraph", ["Hive", "Sub"], "More text here."),
    ]


@pytest.mark.parametrize(("data", "expected"), [
    (_docs.html_bytes("<p>Caf\u00e9 cr\u00e8me at \u20ac3.</p>", charset="windows-1252"),
     "Caf\u00e9 cr\u00e8me at \u20ac3."),
    # as in browsers, an ISO-8859-1 label means windows-1252 (0x92 is a quote mark)
    (_docs.html_bytes("<p>It\u2019s caf\u00e9 honey.</p>", charset="cp1252")
     .replace(b'charset="cp1252"', b'charset="ISO-8859-1"'), "It\u2019s caf\u00e9 honey."),
    (b'<html><head><meta http-equiv="Content-Type" content="text/html; charset=koi8-r">'
     b"</head><body><p>" + "\u043c\u0451\u0434".encode("koi8-r") + b"</p></body></html>",
     "\u043c\u0451\u0434"),
    (b"\xef\xbb\xbf<!DOCTYPE html><p>BOM and caf\xc3\xa9.</p>", "BOM and caf\u00e9."),
    (b"\xff\xfe" + "<html><body><p>Sixteen \u00e9.</p></body></html>".encode("utf-16-le"),
     "Sixteen \u00e9."),
    (b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<html xmlns="http://www.w3.org/1999/xhtml">'
     b"<body><p>Caf\xe9.</p></body></html>", "Caf\u00e9."),
    # undeclared and not UTF-8: decoded as UTF-8 with replacement characters, no crash
    (_docs.html_bytes("<p>Caf\u00e9.</p>", charset="latin-1", declare=False), "Caf\ufffd."),
], ids=["windows-1252", "iso-8859-1", "http-equiv", "utf-8-bom", "utf-16-bom", "xml-decl",
        "undeclared"])
def test_html_charset(data, expected):
    doc = HtmlParser().parse(data, filename="c.html")
    assert all_text(doc) == expected


@pytest.mark.parametrize("data", [
    _docs.html_bytes("<nav><ul><li></li></ul></nav><div>   </div>"),
    b"<html><head><title>Only a title</title></head><body></body></html>",
    b"   \n",
    b"",
    _docs.html_bytes("<p>\u200b\u2066\u2069</p><div>\u202e\ufeff\u00ad</div>"),
], ids=["blank", "title-only", "whitespace", "zero-bytes", "invisible-only"])
def test_html_without_text_is_rejected(data):
    with pytest.raises(ParseError) as caught:
        HtmlParser().parse(data, filename="b.html")
    assert caught.value.reason is RejectionReason.NO_TEXT


@pytest.mark.parametrize("depth", [300, 5000, 100_000])
def test_deeply_nested_html_keeps_its_text(depth):
    """libxml2 stops building the tree at 256 levels and drops the whole page; the parser
    reads such a page as flat text instead, with a warning."""
    body = ("<h1>Winter</h1><p>Before the nest.</p>" + "<div>" * depth
            + "<p>Deep inside the hive.</p>" + "</div>" * depth
            + "<h2>Spring</h2><p>After the nest.</p><script>var hidden = 1;</script>")
    doc = HtmlParser().parse(_docs.html_bytes(body), filename="deep.html")
    text = all_text(doc)
    for phrase in ("Before the nest.", "Deep inside the hive.", "After the nest."):
        assert phrase in text
    assert "hidden" not in text
    assert section_with(doc, "After the nest.").heading_path == ["Winter", "Spring"]
    assert any("deep" in w for w in doc.warnings), doc.warnings


@pytest.mark.parametrize("odd", ["<![foo[ x ]]>", "<![ ", "<![if x]>", "<![CDATA[ cdata ]]>",
                                 "<!bogus>", "<?pi x>", "</ >"])
def test_deep_html_with_odd_declarations_is_still_read(odd):
    """The flat reader (Python 3.11's html.parser) raised AssertionError on "<![" that
    does not open a known marked section."""
    data = _docs.html_bytes("<div>" * 300 + f"<p>Inside the hive.</p>{odd}<p>After it.</p>")
    text = all_text(HtmlParser().parse(data, filename="odd.html"))
    assert "Inside the hive." in text and "After it." in text


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x00", "\x1b", "\x01", "\ufffe", "\uffff"])
def test_html_with_control_characters_is_read(char):
    """lxml refuses to set text holding characters XML forbids; dropping a ``<script>``
    whose tail holds one raised ValueError (found by tests/test_parser_fuzz.py)."""
    data = _docs.html_bytes(f"<p>Bees{char} fan the hive.</p><p>Before<script>x()</script>"
                            f"{char} after the script.</p>")
    text = all_text(HtmlParser().parse(data, filename="ctl.html"))
    assert "fan the hive." in text and "after the script." in text
    assert char not in text


def test_html_nested_20000_divs_deep_is_chunked():
    sentence = "Worker bees build comb from wax that they secrete from glands on the abdomen. "
    doc = HtmlParser().parse(_docs.nested_div_html_bytes(20_000, sentence * 3),
                             filename="deep.html")
    chunks = StructuredChunker().chunk(doc, options=ChunkOptions())
    assert chunks and sentence.strip() in chunks[0].text


def test_html_nested_lists_5000_deep_keep_their_text():
    body = "<ul><li>level" * 5000 + " bottom" + "</li></ul>" * 5000
    doc = HtmlParser().parse(_docs.html_bytes(body), filename="lists.html")
    assert all_text(doc).count("level") == 5000 and all_text(doc).endswith("level bottom")


def test_html_just_under_the_depth_limit_keeps_its_structure():
    body = "<div>" * 200 + "<h2>Deep heading</h2><p>Deep text.</p>" + "</div>" * 200
    doc = HtmlParser().parse(_docs.html_bytes(body), filename="d.html")
    assert section_with(doc, "Deep text.").heading_path == ["Deep heading"]
    assert doc.warnings == []


# --- Markdown --------------------------------------------------------------------------


def test_markdown_example_heading_paths_and_front_matter():
    doc = parse_example("preparing-for-winter.md")
    title = "Preparing Honeybee Colonies for Winter"
    assert doc.media_type == "text/markdown"
    assert doc.title == title
    assert section_with(doc, "baker's fondant").heading_path == [
        title, "Feeding", "Fondant in midwinter"]
    assert section_with(doc, "newspaper").heading_path == [
        title, "Assessing each colony in late summer", "Colony strength"]
    assert section_with(doc, "Damp kills").heading_path == [
        title, "Protecting the hive", "Moisture and ventilation"]
    assert section_with(doc, "Damp kills").kind == "paragraph"
    text = all_text(doc)
    assert "license: CC0-1.0" not in text and "tags:" not in text  # front matter skipped
    assert "Printed from the club handbook" not in text  # HTML block dropped


def test_markdown_syntax_is_stripped():
    doc = parse_example("preparing-for-winter.md")
    text = all_text(doc)
    assert "See the varroa leaflet for monitoring methods." in text  # link -> its text
    assert "varroa-management.pdf" not in text and "](" not in text
    assert "**" not in text and "*winter bees*" not in text
    assert "draw together into a winter cluster, a roughly" in text
    assert "#" not in text
    lists = [s for s in doc.sections if s.kind == "list"]
    assert len(lists) == 1 and len(lists[0].text.splitlines()) == 3
    assert lists[0].text.startswith("Use a contact or frame feeder")
    (table,) = [s for s in doc.sections if s.kind == "table"]
    assert table.text.splitlines()[0] == "Threat | Sign | Protection"
    assert "Mice | Chewed comb and debris at the entrance | Metal mouse guard from autumn" in table.text
    assert "---" not in table.text


def test_second_markdown_example_setext_headings_lists_images_quotes():
    doc = parse_example("swarming.md")
    title = "Swarm Biology and Swarm Control"
    assert doc.title == title  # a setext h1, no front matter
    assert [s.text for s in doc.sections if s.kind == "heading"][:3] == [
        title, "Why colonies swarm", "Recognising the warning signs"]
    steps = section_with(doc, "Move the original hive")
    assert steps.kind == "list"
    assert steps.heading_path == [title, "Methods of swarm control", "The artificial swarm"]
    assert len(steps.text.splitlines()) == 3
    text = all_text(doc)
    assert "A swarm clustered on an apple branch" not in text and "swarm-photo" not in text
    assert "a swarm in July is not worth a fly" in text  # the blockquote's text
    assert "Congestion. When the brood nest" in text


def test_markdown_code_nested_lists_and_inline_markup():
    source = (
        b"---\ntitle: \"Front title\"\n---\n"
        b"Intro with `inline code`, ~~struck~~ text, <span>inline html</span>, "
        b"an ![image](x.png) and a [link](http://example.org \"t\").\n\n"
        b"## Part\n\n"
        b"- top\n  - nested **bold**\n    - deeper\n- next\n\n"
        b"```python\ndef f(x):\n    return x  # keep *this*\n```\n\n"
        b"    indented code\n\n"
        b"#### Deep heading\n\nLine one  \nline two\n"
    )
    doc = MarkdownParser().parse(source, filename="x.md")
    assert doc.title == "Front title"
    assert [(s.kind, s.heading_path, s.text) for s in doc.sections] == [
        ("paragraph", [], "Intro with inline code, struck text, inline html, an and a link."),
        ("heading", ["Part"], "Part"),
        ("list", ["Part"], "top\n  nested bold\n    deeper\nnext"),
        ("code", ["Part"], "def f(x):\n    return x  # keep *this*"),
        ("code", ["Part"], "indented code"),
        ("heading", ["Part", "Deep heading"], "Deep heading"),
        ("paragraph", ["Part", "Deep heading"], "Line one\nline two"),
    ]


@pytest.mark.parametrize("data", [
    b"---\ntitle: Only front matter\n---\n",
    b"<div>\nonly an html block\n</div>\n",
    b"![just an image](a.png)\n",
    b"\n\n  \n",
    b"",
    "# \u200b\n\n\u202e\u2066 \u200d\n\n- \ufeff\n".encode(),
], ids=["front-matter", "html-block", "image", "whitespace", "zero-bytes", "invisible-only"])
def test_markdown_without_text_is_rejected(data):
    with pytest.raises(ParseError) as caught:
        MarkdownParser().parse(data, filename="e.md")
    assert caught.value.reason is RejectionReason.NO_TEXT


def test_markdown_nested_20000_blockquotes_deep_keeps_its_text():
    """markdown-it stops parsing at its nesting limit and drops the rest of the file;
    the parser must notice, flatten the structure and keep every word, with a warning."""
    doc = MarkdownParser().parse(_docs.nested_blockquote_md_bytes(20_000), filename="q.md")
    assert [s.text for s in doc.sections] == ["text"]
    assert any("nest" in w for w in doc.warnings), doc.warnings


@pytest.mark.parametrize(("depth", "flattened"), [(12, False), (40, True), (5000, True)])
def test_markdown_deep_structure_keeps_the_text_before_inside_and_after(depth, flattened):
    data = (b"# Hive notes\n\nBefore the quote.\n\n" + b"> " * depth + b"Deep inside.\n\n"
            + b"After the quote.\n\n" + b"- " * depth + b"Deep in a list.\n\n"
            + b"## Later\n\nThe end of the notes.\n")
    doc = MarkdownParser().parse(data, filename="deep.md")
    text = all_text(doc)
    for phrase in ("Before the quote.", "Deep inside.", "After the quote.", "Deep in a list.",
                   "The end of the notes."):
        assert phrase in text
    assert section_with(doc, "The end of the notes.").heading_path == ["Hive notes", "Later"]
    assert any("nest" in w for w in doc.warnings) is flattened


def test_markdown_flattened_text_is_chunked():
    sentence = "Worker bees build comb from wax that they secrete from glands on the abdomen."
    doc = MarkdownParser().parse(_docs.nested_blockquote_md_bytes(20_000, sentence * 3),
                                 filename="q.md")
    chunks = StructuredChunker().chunk(doc, options=ChunkOptions())
    assert chunks and sentence in chunks[0].text


# --- plain text ------------------------------------------------------------------------


def test_text_example_paragraphs_and_heading_lines():
    doc = parse_example("apiary-calendar.txt")
    title = "A YEAR IN THE APIARY: SEASONAL TASKS FOR A TEMPERATE CLIMATE"
    assert doc.media_type == "text/plain"
    assert doc.title == title
    assert len(doc.sections) == 16  # title, intro, then 7 x (heading, paragraph)
    headings = [s.text for s in doc.sections if s.kind == "heading"]
    assert headings == [title, "Late winter", "Early spring", "Late spring", "Summer",
                        "Late summer", "Autumn", "Winter"]
    cells = section_with(doc, "queen cells with eggs")
    assert cells.kind == "paragraph"
    assert cells.heading_path == [title, "Late spring"]
    assert cells.text.startswith("Colonies grow rapidly")
    assert cells.text.endswith("within a few weeks.")
    assert "\n" in cells.text  # line breaks inside a paragraph are kept


def test_text_paragraphs_split_on_blank_lines():
    data = b"first line\r\nsecond line  \r\n\r\n   \r\nnext paragraph.\n\n\n\nlast one."
    doc = TextParser().parse(data, filename="t.txt")
    assert [s.text for s in doc.sections] == [
        "first line\nsecond line", "next paragraph.", "last one."]
    assert {s.kind for s in doc.sections} == {"paragraph"}
    assert doc.title is None


@pytest.mark.parametrize(("data", "expected"), [
    ("UTF-16 caf\u00e9.\n\nSecond.".encode("utf-16"), ["UTF-16 caf\u00e9.", "Second."]),
    ("\ufeffUTF-16BE.".encode("utf-16-be"), ["UTF-16BE."]),
    (b"\xef\xbb\xbfUTF-8 with BOM.", ["UTF-8 with BOM."]),
    ("Caf\u00e9 \u2013 cr\u00e8me.".encode("cp1252"), ["Caf\u00e9 \u2013 cr\u00e8me."]),
], ids=["utf-16-le-bom", "utf-16-be-bom", "utf-8-bom", "windows-1252"])
def test_text_encodings(data, expected):
    assert [s.text for s in TextParser().parse(data, filename="t.txt").sections] == expected


@pytest.mark.parametrize("data", [
    b"", b" \n\n\t\n", _docs.png_bytes(),
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202e\u2066\u2069\ufeff\n\n\u2028\u2029".encode(),
    bytes(range(1, 32)) * 10,
], ids=["zero-bytes", "whitespace", "png", "invisible-only", "control-only"])
def test_text_without_text_is_rejected(data):
    with pytest.raises(ParseError) as caught:
        TextParser().parse(data, filename="t.txt")
    assert caught.value.reason is RejectionReason.NO_TEXT


# --- the ingest service's checks on names and types (services/ingest/_documents.py) ----


def registered(parser) -> Registered:
    return Registered(obj=parser, kind="register_parsers", plugin=parser.name, version="0")


REGISTERED = [registered(p) for p in PARSERS]


@pytest.mark.parametrize(("char", "name"), [
    ("\u202a", "LEFT-TO-RIGHT EMBEDDING"),
    ("\u202b", "RIGHT-TO-LEFT EMBEDDING"),
    ("\u202c", "POP DIRECTIONAL FORMATTING"),
    ("\u202d", "LEFT-TO-RIGHT OVERRIDE"),
    ("\u202e", "RIGHT-TO-LEFT OVERRIDE"),
    ("\u2066", "LEFT-TO-RIGHT ISOLATE"),
    ("\u2067", "RIGHT-TO-LEFT ISOLATE"),
    ("\u2068", "FIRST STRONG ISOLATE"),
    ("\u2069", "POP DIRECTIONAL ISOLATE"),
    ("\u200b", "ZERO WIDTH SPACE"),
    ("\u200c", "ZERO WIDTH NON-JOINER"),
    ("\u200d", "ZERO WIDTH JOINER"),
    ("\u200e", "LEFT-TO-RIGHT MARK"),
    ("\u200f", "RIGHT-TO-LEFT MARK"),
    ("\ufeff", "ZERO WIDTH NO-BREAK SPACE"),
    ("\u2028", "LINE SEPARATOR"),
    ("\u2029", "PARAGRAPH SEPARATOR"),
    ("\u00ad", "SOFT HYPHEN"),
    ("\u2060", "WORD JOINER"),
    ("\U000e0041", "TAG LATIN CAPITAL LETTER A"),
])
def test_names_with_invisible_or_bidi_characters_are_unsafe(char, name):
    spoof = f"invoice{char}fdp.exe.pdf"
    with pytest.raises(Rejection) as caught:
        check_filename(spoof)
    assert caught.value.reason is RejectionReason.UNSAFE_NAME
    detail = caught.value.detail
    assert f"U+{ord(char):04X} {name}" in detail
    assert char not in detail  # the name is shown escaped, never raw
    assert repr(spoof) in detail


@pytest.mark.parametrize(("filename", "shown"), [
    ("bell\x07.txt", "U+0007"),
    ("nul\x00.txt", "U+0000"),
    ("del\x7f.txt", "U+007F"),
    ("c1\x85.txt", "U+0085"),
    ("bytes\udcff.pdf", "U+DCFF"),  # os.fsdecode of a name that is not UTF-8
])
def test_names_with_control_characters_or_lone_surrogates_are_unsafe(filename, shown):
    with pytest.raises(Rejection) as caught:
        check_filename(filename)
    assert caught.value.reason is RejectionReason.UNSAFE_NAME
    assert shown in caught.value.detail
    assert filename[-5] not in caught.value.detail


@pytest.mark.parametrize("filename", [
    "Bienenstöcke 2024 (Entwurf).pdf", "日本語のメモ.md", "miel 🐝 récolte.txt",
    "עברית.html", "نحل.txt", "report.v2.final.pdf", "a b\u00a0c.txt",
])
def test_ordinary_names_in_any_script_are_accepted(filename):
    assert check_filename(filename) == filename


def test_content_sniffing_wins_over_the_name_and_the_mismatch_is_reported():
    data = _docs.html_bytes("<h1>Quarterly report</h1><p>Honey yields rose.</p>")
    reg = detect_parser(data[:SNIFF_BYTES], "report.pdf", REGISTERED)
    assert reg.name == "html"
    assert sniff_mismatch("report.pdf", reg.obj.media_types) == (
        "the name says application/pdf but the content is text/html; read as text/html")


@pytest.mark.parametrize(("filename", "parser", "expected"), [
    ("scan.html", PdfParser(), "the name says text/html but the content is application/pdf"),
    ("notes.md", PdfParser(), "the name says text/markdown but the content is application/pdf"),
    ("page.html", TextParser(), "the name says text/html but the content is text/plain"),
    ("notes.txt.gz", TextParser(), "the name says application/gzip but the content is text/plain"),
    ("photo.PNG", HtmlParser(), "the name says image/png but the content is text/html"),
    ("letter.docx", TextParser(), "the name says application/vnd.openxmlformats-officedocument."
                                  "wordprocessingml.document but the content is text/plain"),
])
def test_sniff_mismatch_names_both_types(filename, parser, expected):
    warning = sniff_mismatch(filename, parser.media_types)
    assert warning == f"{expected}; read as {parser.media_types[0]}"


@pytest.mark.parametrize(("filename", "parser"), [
    ("report.pdf", PdfParser()),
    ("REPORT.PDF", PdfParser()),
    ("page.htm", HtmlParser()),
    ("page.xhtml", HtmlParser()),
    ("notes.md", MarkdownParser()),
    ("notes.markdown", MarkdownParser()),
    ("README.txt", MarkdownParser()),  # Markdown is plain text
    ("notes.txt", TextParser()),
    ("data.csv", TextParser()),
    ("script.py", TextParser()),
    ("config.json", TextParser()),
    ("upload", PdfParser()),  # no extension: nothing to contradict
    ("notes.unknownext", HtmlParser()),
])
def test_sniff_mismatch_is_quiet_when_the_name_agrees_or_says_nothing(filename, parser):
    assert sniff_mismatch(filename, parser.media_types) is None


# --- the bad-input set other tests use -------------------------------------------------


@pytest.mark.parametrize("bad", _docs.bad_inputs(), ids=lambda bad: bad.filename)
def test_every_bad_input_gets_its_reason(bad):
    parser = route(bad.data, bad.filename)
    if bad.reason is RejectionReason.EMPTY or parser is None:
        # the service's own checks reject these (a legacy .doc is claimed by the Word
        # parser, to say what to do with it)
        assert bad.reason in (RejectionReason.EMPTY, RejectionReason.UNKNOWN_TYPE)
        assert parser is None
        return
    with pytest.raises(ParseError) as caught:
        parser.parse(bad.data, filename=bad.filename)
    assert caught.value.reason is bad.reason


def test_write_bad_inputs(tmp_path):
    written = _docs.write_bad_inputs(tmp_path / "bad")
    assert set(written) == {bad.filename for bad in _docs.bad_inputs()}
    for name, (path, reason) in written.items():
        assert path.parent == tmp_path / "bad" and path.name == name
        assert isinstance(reason, RejectionReason)
    assert written["empty.txt"][0].stat().st_size == 0
    assert written["image.png"][0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_generated_png_is_well_formed():
    import zlib

    data = _docs.png_bytes(10, 6)
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (10, 6)
    idat = data.index(b"IDAT")
    length = int.from_bytes(data[idat - 4:idat], "big")
    assert len(zlib.decompress(data[idat + 4:idat + 4 + length])) == height * (1 + 3 * width)


# --- the example set -------------------------------------------------------------------


def test_examples_are_listed_licensed_and_small():
    documents = sorted(p.name for p in EXAMPLES.iterdir() if p.is_file())
    assert "CC0-1.0" in (EXAMPLES_DOCS / "LICENSE.md").read_text()
    readme = (EXAMPLES_DOCS / "README.md").read_text()
    assert sorted(documents) == sorted(EXPECTED_PARSER)
    for name in documents:
        assert name in readme, f"{name} is not listed in examples/README.md"
    assert sum((EXAMPLES / name).stat().st_size for name in documents) < 300_000


@pytest.mark.parametrize("name", sorted(EXPECTED_PARSER))
def test_each_example_has_400_to_1500_words(name):
    words = len(all_text(parse_example(name)).split())
    assert 400 <= words <= 1500, words


def _shingles(text: str, size: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + size]) for i in range(len(words) - size + 1)}


def test_the_repost_is_a_near_duplicate_of_the_html_article():
    original = _shingles(all_text(parse_example("foragers-waggle-dance.html")))
    repost = _shingles(all_text(parse_example("waggle-dance-repost.md")))
    similarity = len(original & repost) / len(original | repost)
    assert 0.6 < similarity < 0.98, similarity
    # and no other pair of examples comes close
    others = [name for name in EXPECTED_PARSER if "waggle" not in name]
    for name in others:
        other = _shingles(all_text(parse_example(name)))
        assert len(original & other) / len(original | other) < 0.05, name
