"""HTML parser: the main content of a web page, with its heading structure.

The article is found with trafilatura (offline; it drops navigation, headers, footers,
sidebars, cookie banners, comments and other boilerplate) and read from its XML output,
which keeps ``h1``-``h6`` levels, lists, tables and code. Each block becomes a
``Section``: ``kind`` is ``heading``, ``paragraph``, ``list``, ``table`` or ``code``, and
``heading_path`` is the chain of enclosing headings (a heading's own path ends with it).
For a short page (under trafilatura's 250-character minimum, where it falls back to a
baseline that flattens headings and keeps banner text), or when trafilatura loses the
headings, a structured lxml walk over the page minus its furniture (``nav``, ``aside``,
page ``header``/``footer``, and elements whose id or class names a cookie banner, menu,
sidebar, footer, share bar, comments...) is used instead.

Bytes are decoded from a byte-order mark, else the ``<meta charset>`` (or
``http-equiv``/XML) declaration in the first 4 KiB, else as UTF-8 with replacement
characters; characters XML forbids (C0 controls other than tab and line breaks, U+FFFE,
U+FFFF), which lxml cannot hold, become spaces. As browsers do, the labels ``iso-8859-1``/``latin1``/``ascii`` mean
windows-1252. The title comes from ``og:title``, then ``<title>``, then the first ``h1``.
A page without text is rejected with ``no_text``.

libxml2 stops building the tree of a page nested deeper than 256 elements (or past one of
its other resource limits) and the page comes out empty. Such a page is read instead by a
streaming tokenizer (the standard library's ``html.parser``, which keeps no tree and so
has no depth): headings stay headings, block elements end paragraphs, scripts and styles
are dropped; a warning says the structure was flattened.
"""

from __future__ import annotations

import codecs
import html.parser
import re

from syllabus.contracts import ParsedDocument, ParseError, RejectionReason, Section, hookimpl

from ._outline import Outline, collapse_spaces, table_text

__all__ = ["HtmlParser", "decode_html", "register_parsers"]

_MARKUP_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]",
                           re.IGNORECASE | re.DOTALL)
_MARKUP_ANYWHERE = re.compile(rb"<(?:html|head|body|div|p|h[1-6]|title|meta|table|ul|a)[\s>/]",
                              re.IGNORECASE)
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9._:-]+)""")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
# WHATWG: these labels mean windows-1252 (which is a superset of latin-1's printable range)
_WINDOWS_1252_ALIASES = {"iso8859-1", "ascii", "cp1252"}
# id/class words of page furniture; matched as whole words ("site-footer", "cookie_bar")
_BOILERPLATE = re.compile(
    r"(?:^|[\s_-])(?:cookies?|cookiebar|consent|gdpr|nav|navbar|navigation|menu|breadcrumbs?|"
    r"sidebar|widgets?|footer|share|sharing|social|related|comments?|newsletter|subscribe|"
    r"adverts?|ads|promo|popup|modal)(?=$|[\s_-])",
    re.IGNORECASE)
_BOILERPLATE_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search",
                      "dialog", "alertdialog"}
# never content
_DROP_TAGS = ("script", "style", "noscript", "template", "head", "svg", "iframe", "select",
              "input", "textarea", "button", "dialog")
# page furniture, unless it holds most of the page's text (an ASP.NET <form> around it all)
_FURNITURE_TAGS = ("nav", "aside", "form", "menu")
_MIN_MAIN_CHARS = 250
# the flat reader: elements whose text is never content, and elements that end a paragraph
_FLAT_SKIP = frozenset({"script", "style", "noscript", "template", "textarea"})
_FLAT_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "br", "dd", "details", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li", "main",
    "nav", "ol", "p", "pre", "section", "summary", "table", "td", "th", "tr", "ul",
})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_MARKED_SECTION = re.compile(r"<!\[")
# characters XML forbids: lxml refuses to set them as text (drop_tree raises ValueError)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def decode_html(data: bytes) -> str:
    """Decode an HTML document's bytes (BOM, then declared charset, then UTF-8)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    head = data[:4096]
    match = _XML_ENCODING.search(head) or _CHARSET.search(head)
    encoding = "utf-8"
    if match:
        try:
            name = codecs.lookup(match.group(1).decode("ascii")).name
        except (LookupError, UnicodeDecodeError):
            name = "utf-8"
        if name in _WINDOWS_1252_ALIASES:
            name = "cp1252"
        # a page that is not ASCII-compatible would not have had a readable declaration
        encoding = "utf-8" if name.startswith(("utf-16", "utf-32")) else name
    text = data.decode(encoding, errors="replace")
    # the declaration has done its job; lxml refuses str input that still declares one
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)


def _heading_level(tag_or_rend: str | None, default: int = 2) -> int:
    match = re.fullmatch(r"h([1-6])", (tag_or_rend or "").lower())
    return int(match.group(1)) if match else default


def _list_text(element, item_tag: str, list_tag: str, depth: int = 0) -> list[str]:
    """One line per item; nested lists are indented by two spaces per level."""
    lines: list[str] = []
    for item in element:
        if item.tag != item_tag:
            continue
        own = [item.text or ""]
        nested: list[str] = []
        for child in item:
            if child.tag == list_tag or child.tag in ("ul", "ol"):
                nested += _list_text(child, item_tag, list_tag, depth + 1)
            else:
                own.append(child.xpath("string()"))
            own.append(child.tail or "")
        line = collapse_spaces("".join(own))
        if line:
            lines.append("  " * depth + line)
        lines += nested
    return lines


def _table_text(rows) -> str:
    return table_text([cell.xpath("string()") for cell in row] for row in rows)


def _sections_from_trafilatura(text: str) -> list[Section]:
    import trafilatura
    from lxml import etree

    xml = trafilatura.extract(
        text, output_format="xml", include_comments=False, include_tables=True,
        include_images=False, include_links=False, include_formatting=False,
        deduplicate=False, with_metadata=False)
    if not xml:
        return []
    root = etree.fromstring(xml.encode("utf-8"))
    main = root.find("main")
    if main is None:
        return []
    out = Outline()
    out.block(collapse_spaces(main.text or ""), "paragraph")
    for element in main:
        tag = element.tag
        if tag == "head":
            out.heading(_heading_level(element.get("rend")), element.xpath("string()"))
        elif tag == "list":
            out.block("\n".join(_list_text(element, "item", "list")), "list")
        elif tag == "table":
            out.block(_table_text(element.iter("row")), "table")
        elif tag == "code":
            out.block(element.xpath("string()"), "code")
        elif tag != "graphic":
            out.block(collapse_spaces(element.xpath("string()")), "paragraph")
        out.block(collapse_spaces(element.tail or ""), "paragraph")
    return out.sections


def _is_boilerplate(element, body_chars: int) -> bool:
    tag = element.tag
    if tag in _DROP_TAGS:
        return True
    if tag in ("header", "footer"):  # a page's, not an article's own header or footer
        furniture = not any(a.tag in ("article", "main") for a in element.iterancestors())
    else:
        furniture = (tag in _FURNITURE_TAGS
                     or (element.get("role") or "").lower() in _BOILERPLATE_ROLES
                     or bool(_BOILERPLATE.search(f"{element.get('id', '')} "
                                                 f"{element.get('class', '')}")))
    # a class such as "has-sidebar" on a wrapper must not take the article with it
    return furniture and len(element.text_content()) < body_chars / 2


def _sections_from_lxml(document) -> list[Section]:
    """A structured walk over the page without its navigation and other boilerplate."""
    body = document.find("body")
    if body is None:
        body = document
    body_chars = len(body.text_content())
    for element in list(body.iter()):
        if not isinstance(element.tag, str) or element is body:
            continue  # comments and processing instructions
        if element.getparent() is not None and _is_boilerplate(element, body_chars):
            element.drop_tree()
    out = Outline()
    for element in body.iter("h1", "h2", "h3", "h4", "h5", "h6", "p", "ul", "ol", "pre",
                             "table", "blockquote", "dl"):
        if any(parent.tag in ("ul", "ol", "table", "pre", "blockquote", "dl", "p")
               for parent in element.iterancestors()):
            continue  # handled with its container
        if element.tag.startswith("h"):
            out.heading(_heading_level(element.tag), element.text_content())
        elif element.tag in ("ul", "ol"):
            out.block("\n".join(_list_text(element, "li", element.tag)), "list")
        elif element.tag == "table":
            out.block(_table_text(element.iter("tr")), "table")
        elif element.tag == "pre":
            out.block(element.text_content(), "code")
        else:
            out.block(collapse_spaces(element.text_content()), "paragraph")
    if not out.sections:
        out.block(collapse_spaces(body.text_content()), "paragraph")
    return out.sections


def _choose(main: list[Section], walked: list[Section]) -> list[Section]:
    """trafilatura's main content for a real page; the walk for a short one.

    Below ``MIN_EXTRACTED_SIZE`` (250 characters) trafilatura falls back to a baseline
    that flattens headings into one paragraph and keeps banner text; the walk keeps the
    structure. The walk also wins when it finds headings that trafilatura lost.
    """
    chars = sum(len(s.text) for s in main if s.kind != "heading")
    main_headings = any(s.kind == "heading" for s in main)
    walk_headings = any(s.kind == "heading" for s in walked)
    if main and chars >= _MIN_MAIN_CHARS and (main_headings or not walk_headings):
        return main
    return walked or main


class _FlatReader(html.parser.HTMLParser):
    """Sections from a page without building its tree (for pages too deep for libxml2)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Outline()
        self.title: str | None = None
        self._text: list[str] = []
        self._heading: int | None = None
        self._skip = 0
        self._in_title = False

    def _flush(self) -> None:
        text = collapse_spaces("".join(self._text))
        self._text = []
        if self._heading is not None:
            self.out.heading(self._heading, text)
            self._heading = None
        else:
            self.out.block(text, "paragraph")

    def handle_starttag(self, tag, attrs) -> None:
        if tag in _FLAT_SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _HEADINGS:
            self._flush()
            self._heading = int(tag[1])
        elif tag in _FLAT_BLOCKS:
            self._flush()

    def handle_endtag(self, tag) -> None:
        if tag in _FLAT_SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _HEADINGS or tag in _FLAT_BLOCKS:
            self._flush()

    def handle_data(self, data) -> None:
        if self._in_title:
            self.title = collapse_spaces(f"{self.title or ''} {data}") or None
        elif not self._skip:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def _sections_flat(text: str) -> tuple[list[Section], str | None]:
    reader = _FlatReader()
    # Python 3.11's html.parser raises AssertionError on "<![" that opens no known marked
    # section; browsers read any "<![" as a bogus comment up to the next ">", and so does
    # html.parser once the "[" is not the third character.
    try:
        reader.feed(_MARKED_SECTION.sub("<!_[", text))
        reader.close()
    except AssertionError as exc:  # any other such case: refuse by name, never crash
        raise ParseError(RejectionReason.CORRUPT,
                         f"the HTML page could not be tokenised: {exc}") from exc
    return reader.out.sections, reader.title


def _resource_limit(parser) -> str | None:
    """libxml2's message when it gave up on part of the page (depth, text size...)."""
    for entry in parser.error_log:
        if entry.type_name == "ERR_RESOURCE_LIMIT":
            return entry.message.strip()
    return None


def _title(document) -> str | None:
    for path in ('//meta[@property="og:title"]/@content', '//meta[@name="og:title"]/@content',
                 "//title//text()", "//h1//text()"):
        found = collapse_spaces(" ".join(str(v) for v in document.xpath(path)))
        if found:
            return found
    return None


class HtmlParser:
    """Main-content extraction with trafilatura, with an lxml fallback."""

    name = "html"
    media_types = ("text/html", "application/xhtml+xml")
    priority = 80

    def sniff(self, head: bytes, filename: str) -> bool:
        if b"\x00" in head[:1024] and not head.startswith((codecs.BOM_UTF16_LE,
                                                            codecs.BOM_UTF16_BE)):
            return False
        start = head[:1024]
        for bom, encoding in _BOMS:
            if start.startswith(bom):
                start = start.decode(encoding, errors="ignore").encode("utf-8")
                break
        start = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", start)
        if _MARKUP_START.search(start):
            return True
        if filename.lower().endswith((".html", ".htm", ".xhtml")):
            return bool(_MARKUP_ANYWHERE.search(head))
        return False

    def parse(self, data: bytes, *, filename: str) -> ParsedDocument:
        import lxml.html
        from lxml.etree import ParserError

        # as whitespace: a form feed or vertical tab still separates words
        text = _NOT_XML.sub(" ", decode_html(data))
        if not text.strip():
            raise ParseError(RejectionReason.NO_TEXT, "the HTML document is empty")
        parser = lxml.html.HTMLParser()
        try:
            document = lxml.html.document_fromstring(text, parser=parser)
        except (ParserError, ValueError) as exc:
            raise ParseError(RejectionReason.NO_TEXT, f"no HTML content: {exc}") from exc
        warnings: list[str] = []
        limit = _resource_limit(parser)
        if limit:
            sections, title = _sections_flat(text)
            warnings.append(
                f"the HTML page is too deep or too large for libxml2 ({limit}); it was read "
                "as flat text, without its lists, tables or boilerplate removal")
        else:
            title = _title(document)
            sections = _choose(_sections_from_trafilatura(text), _sections_from_lxml(document))
        if not sections:
            raise ParseError(RejectionReason.NO_TEXT, "the HTML page has no text content")
        return ParsedDocument(media_type="text/html", title=title,
                              sections=sections, warnings=warnings)


@hookimpl
def register_parsers(register):
    register(HtmlParser())
