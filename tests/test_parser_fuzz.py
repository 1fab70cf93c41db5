"""Property tests: no input makes a parser, the sniffers or the chunker crash.

For every built-in parser, on random bytes, on random markup-heavy text and on the
example documents with bytes flipped, inserted, deleted, duplicated or cut off:

- ``parse`` returns a ``ParsedDocument`` with at least one section of visible text (never
  an empty "success" that later yields 0 chunks) or raises ``ParseError`` with a
  ``RejectionReason`` and a detail; never any other exception (RecursionError,
  UnicodeError, lxml or pdfium errors...). Warnings and details stay small, as they
  travel in NATS messages.
- the ``structured`` chunker never raises on a returned document, and its chunks are
  slices of the normalised text within the token budget.
- ``sniff`` never raises and answers a bool, and neither do the ingest service's name and
  type checks (``check_filename``, ``detect_parser``, ``sniff_mismatch``).

Bounded for CI: fixed seeds (``derandomize``), no example database, and fewer examples for
the PDF parser, which is the slowest.
"""

from __future__ import annotations

import io
import unicodedata
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syllabus.contracts import (
    ChunkOptions,
    ParsedDocument,
    ParseError,
    RejectionReason,
    Section,
)
from syllabus.plugins.chunkers.structured import StructuredChunker, normalise_document
from syllabus.plugins.parsers._visible import has_visible_text
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
from tests import _docs, _office

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "bees"
PARSERS = {p.name: p for p in (PdfParser(), HtmlParser(), MarkdownParser(), TextParser(),
                               DocxParser(), PptxParser())}
REGISTERED = [Registered(obj=p, kind="register_parsers", plugin=p.name, version="0")
              for p in PARSERS.values()]
SEEDS = {path.name: path.read_bytes() for path in sorted(EXAMPLES.iterdir())}
# uncompressed, hand-made PDFs: edits land in their structure, not in a deflate stream
SEEDS["hand-made.pdf"] = _docs.page_count_lie_pdf_bytes(1)
SEEDS["self-drawing-form.pdf"] = _docs.self_drawing_form_pdf_bytes()
SEEDS["handbook.docx"] = _office.handbook_docx_bytes()
SEEDS["talk.pptx"] = _office.talk_pptx_bytes()
SEEDS_BY_PARSER = {
    "docx": ["handbook.docx"],
    "pptx": ["talk.pptx"],
    "pdf": [n for n in SEEDS if n.endswith(".pdf")],
    "html": [n for n in SEEDS if n.endswith(".html")],
    "markdown": [n for n in SEEDS if n.endswith(".md")],
    "text": [n for n in SEEDS if n.endswith(".txt")] + [n for n in SEEDS if n.endswith(".md")],
}
OPTIONS = (ChunkOptions(), ChunkOptions(max_tokens=16, overlap_tokens=8, min_tokens=1))
#: most characters of warnings or a rejection's detail (they travel in NATS messages)
MAX_REPORT_CHARS = 10_000
FILENAMES = ["upload", "doc.pdf", "page.html", "notes.md", "notes.txt", "x.PDF", "a.tar.gz",
             "report.docx", "data.csv"]

# byte strings that mean something to one of the formats, for insertions
TOKENS = [
    b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\xe2\x80\xae", b"\xe2\x80\x8b", b"\r", b"\n\n",
    b"%PDF-1.7\n", b"%%EOF", b"obj", b"endobj", b"stream\n", b"endstream", b"xref", b"trailer",
    b"<<", b">>", b"/Type /Pages", b"/Count 999999", b"/Kids [1 0 R]", b" 0 R", b"(", b")",
    b"BT", b"ET", b"Tj", b"/Filter /FlateDecode", b"/Length 99999999",
    b"<", b">", b"</", b"<div>" * 300, b"<ul><li>" * 50, b"<script>", b"</script>", b"<!--",
    b"<meta charset=utf-16>", b"&amp;", b"&#0;", b"&#x110000;", b"<?xml ", b"<![CDATA[",
    b"<![ ", b"<![foo[", b"<!x", b"<?", b"</ >",
    b"> " * 200, b"- " * 100, b"1. " * 60, b"#", b"# ", b"```", b"~~~", b"|", b"|---|", b"[",
    b"](", b"*", b"_", b"`", b"---\n", b"+++\n", b"    ", b"\t",
]


@st.composite
def mutated(draw, names: list[str]) -> bytes:
    """One of ``names``' bytes after a few random edits."""
    data = bytearray(SEEDS[draw(st.sampled_from(names))])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "insert", "token", "delete", "duplicate", "truncate"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "token":
            data[at:at] = draw(st.sampled_from(TOKENS)) * draw(st.integers(1, 4))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 256))]
        elif op == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 512))]
        else:
            del data[at:]
    return bytes(data)


random_bytes = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=2048).map(lambda b: b"%PDF-1.4\n" + b),
    st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join),
)


def check_parse(parser, data: bytes, filename: str = "fuzz") -> None:
    try:
        doc = parser.parse(data, filename=filename)
    except ParseError as exc:
        assert isinstance(exc.reason, RejectionReason)
        assert exc.detail and len(exc.detail) < MAX_REPORT_CHARS
        return
    assert isinstance(doc, ParsedDocument)
    assert doc.sections and any(has_visible_text(s.text) for s in doc.sections)
    assert sum(len(w) for w in doc.warnings) < MAX_REPORT_CHARS
    full = normalise_document(doc)
    for options in OPTIONS:
        for chunk in StructuredChunker().chunk(doc, options=options):
            assert full[chunk.char_start:chunk.char_end] == chunk.text
            assert chunk.token_count <= options.max_tokens


def check_sniffers(data: bytes, filename: str) -> None:
    head = data[:8192]
    for parser in PARSERS.values():
        assert isinstance(parser.sniff(head, filename), bool)
    try:
        reg = detect_parser(head, filename, REGISTERED)
    except Rejection as rej:
        assert rej.reason is RejectionReason.UNKNOWN_TYPE
        return
    warning = sniff_mismatch(filename, reg.obj.media_types)
    assert warning is None or warning.startswith("the name says ")


FAST = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=40)
MUTATION_SETTINGS = {"pdf": SLOW, "html": settings(FAST, max_examples=60),
                     "markdown": FAST, "text": FAST, "docx": SLOW, "pptx": SLOW}
#: the part of each Office seed whose XML the package mutations edit
MAIN_PARTS = {"handbook.docx": ("word/document.xml", "docx"),
              "talk.pptx": ("ppt/slides/slide1.xml", "pptx")}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_parse_random_bytes(name):
    @settings(SLOW if name == "pdf" else FAST)
    @given(data=random_bytes)
    def run(data):
        check_parse(PARSERS[name], data)

    run()


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_parse_mutated_examples(name):
    @MUTATION_SETTINGS[name]
    @given(data=mutated(SEEDS_BY_PARSER[name]))
    def run(data):
        check_parse(PARSERS[name], data, filename="mutated")

    run()


@pytest.mark.parametrize("seed", sorted(MAIN_PARTS))
def test_parse_office_packages_with_mutated_xml(seed):
    """The ZIP stays valid (edits to its bytes only reach the CRC check); the XML inside
    gets the edits, so python-docx, python-pptx and lxml see damaged markup."""
    part, parser = MAIN_PARTS[seed]
    with zipfile.ZipFile(io.BytesIO(SEEDS[seed])) as archive:
        xml = archive.read(part)

    @SLOW
    @given(edits=st.lists(st.tuples(st.integers(0, len(xml)), st.integers(0, 64),
                                    st.sampled_from(TOKENS + [b"<w:p>", b"</w:p>", b"<a:t>",
                                                              b"</a:t>", b'w:val="x"'])),
                          min_size=1, max_size=6))
    def run(edits):
        data = bytearray(xml)
        for at, cut, token in edits:
            data[at:at + cut] = token
        check_parse(PARSERS[parser], _office.rezip(SEEDS[seed], replace={part: bytes(data)}),
                    filename="mutated")

    run()


@pytest.mark.parametrize("name", ["markdown", "html", "text"])
def test_parse_markup_soup(name):
    """Random text made of the characters and tags that build structure."""
    pieces = ["> ", ">", "- ", "* ", "1. ", "  ", "\t", "\n", "\n\n", "# ", "## ", "```\n",
              "| a | b |\n|---|---|\n", "[", "]", "(", ")", "*", "_", "`", "<div>", "</div>",
              "<ul><li>", "</li></ul>", "<h2>", "</h2>", "<p>", "<table><tr><td>", "<br>",
              "<script>", "</script>", "&nbsp;", "\u200b", "\u202e", "\u00ad", "bee ",
              "Worker bees build comb. ", "wax-\n", "Honey", "\x0c", "\u2028"]

    @FAST
    @given(text=st.lists(st.sampled_from(pieces), max_size=200).map("".join))
    def run(text):
        check_parse(PARSERS[name], text.encode("utf-8", "surrogatepass"), filename="soup")

    run()


section_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["Bees ", "wax-\n", "comb.", " ", "\n", "\n\n", "Page 3", "\u00ad",
                              "\ufb01", "\u2029", "\u200b", "e.g. ", "1990-\n1995", "\u3002",
                              "x" * 200, "\ufdfa", "- 4 -", "iv", "...", "\u201d "]),
             max_size=60).map("".join),
)
sections = st.lists(st.builds(
    Section,
    text=section_text,
    heading_path=st.lists(st.sampled_from(["A", "B", "C \u00e9"]), max_size=3),
    page=st.one_of(st.none(), st.integers(1, 4)),
    kind=st.sampled_from(["paragraph", "heading", "page", "list", "table", "code"]),
), max_size=12)


@FAST
@given(parts=sections, max_tokens=st.integers(16, 64), overlap=st.integers(0, 40),
       min_tokens=st.integers(1, 20))
def test_chunker_never_raises_on_any_sections(parts, max_tokens, overlap, min_tokens):
    doc = ParsedDocument(media_type="text/plain", sections=parts,
                         pages=max((p.page or 0 for p in parts), default=0))
    options = ChunkOptions(max_tokens=max_tokens, overlap_tokens=overlap, min_tokens=min_tokens)
    full = normalise_document(doc)
    for chunk in StructuredChunker().chunk(doc, options=options):
        assert full[chunk.char_start:chunk.char_end] == chunk.text
        assert min_tokens <= chunk.token_count <= max_tokens


@FAST
@given(data=st.one_of(random_bytes, mutated(sorted(SEEDS))),
       filename=st.sampled_from(FILENAMES))
def test_sniffers_and_detection_never_raise(data, filename):
    check_sniffers(data, filename)


@FAST
@given(name=st.one_of(st.text(max_size=80), st.sampled_from(["a\u202efdp.exe", "\udcff.pdf",
                                                               "..", "C:x", "a/b"])))
def test_check_filename_accepts_or_rejects_by_name(name):
    try:
        assert check_filename(name) == name
    except Rejection as rej:
        assert rej.reason is RejectionReason.UNSAFE_NAME
        return
    assert len(name.encode()) <= 255 and "/" not in name and "\\" not in name
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name)
