"""The ``structured`` chunker: structure-aware, token-budgeted chunks with overlap.

How a ``ParsedDocument`` becomes chunks:

1. **Normalise** every section (``_text.prepare`` / ``_text.normalise_block``): Unicode
   NFKC (ligatures such as "ﬁ" become "fi", full-width digits become ASCII), soft hyphens
   and invisible characters dropped, words hyphenated across a line break rejoined (see
   ``_text.join_across_break`` for the rule), whitespace collapsed to single spaces within
   a paragraph and exactly "\\n\\n" between paragraphs. List, table and code sections keep
   their line breaks.
2. **Drop running headers and footers** of paged documents (sections with ``page`` set):
   a line among the first or last three non-blank lines of a page is dropped when it
   occurs in that same zone on at least half of the pages, and on at least two (so on
   every page of a two-page document). Lines compare case-folded, with every number
   replaced by "#" so that "Page 2 of 9" and "- 3 -" match their siblings; in a line with
   more than six other words the numbers must match too (see ``_line_key``).
3. **Assemble the document text**: the non-empty normalised sections, in order, joined by
   "\\n\\n". The one exception is a paged section that ends mid-sentence (no final ".",
   "!", "?", "…", ":" or ";") and is followed by the next page's section under the same
   heading path: that page break is joined with one space, or with nothing when a word is
   hyphenated across it (the hyphen rule of step 1 decides whether the hyphen stays). This
   text is what ``normalise_document`` returns, and what ``char_start``/``char_end`` index.
4. **Group** consecutive sections with the same heading path into blocks. A ``heading``
   section always starts a new block; it takes in the sections that follow it when their
   heading path equals or extends its own. Text is never merged across blocks.
5. **Split** each block into atoms: sentences, each tagged with whether it starts a
   paragraph; a sentence over the budget is split into words, and a word over the budget
   into pieces at token boundaries.
6. **Pack** atoms greedily up to ``max_tokens``. When a chunk is full it ends at the
   strongest boundary (paragraph > sentence > word) that leaves it at least half full,
   the latest such one; otherwise at the last atom that fits. Each chunk after the first
   in a block starts with an overlap of whole trailing sentences of the previous chunk
   totalling at most ``overlap_tokens`` (capped at half the budget and at what leaves room
   for the next atom); when the last sentence alone is too long, its trailing words are
   used instead.
7. **Tidy**: when what would be left after a full chunk is under ``min_tokens``, that
   chunk ends earlier (by whole atoms) so the last one carries at least ``min_tokens`` of
   new text; a tiny tail never fits into the chunk before it, as packing is greedy. Then
   every chunk under ``min_tokens`` is dropped (in practice a block, such as a lone
   heading, that is too small as a whole).

Every chunk is a contiguous slice of the document text:
``chunk.text == normalise_document(doc)[chunk.char_start:chunk.char_end]``, the overlap
included (it is the text just before the new part). ``pages`` lists the 1-based pages of
every paged section the slice touches, sorted; it is ``[]`` for a non-paged document.
``token_count`` is ``count_tokens(chunk.text)`` and never exceeds ``max_tokens``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from syllabus.contracts import ChunkDraft, ChunkOptions, ParsedDocument, Section, hookimpl

from ._text import (
    HyphenEvidence,
    count_tokens,
    ends_sentence,
    join_across_break,
    normalise_block,
    prepare,
    sentence_spans,
    token_units,
    word_spans,
)

__all__ = ["StructuredChunker", "count_tokens", "normalise_document", "register_chunkers"]

#: section kinds whose line breaks carry meaning
_KEEP_LINES = frozenset({"list", "table", "code", "pre"})
#: non-blank lines at the top and at the bottom of a page that may be a running header/footer
_ZONE_LINES = 3
#: share of pages a line must repeat on (in the same zone) to count as a header or footer
_REPEAT_SHARE = 0.5
#: most words (besides numbers) in a header/footer line whose numbers may vary by page
_MAX_NUMBERED_WORDS = 6
#: a full chunk may end at a stronger boundary once it holds this share of the budget
_EARLY_BREAK_FILL = 0.5

# boundary strength before an atom
_PARAGRAPH, _SENTENCE, _WORD, _PIECE = 3, 2, 1, 0

_NUMBER = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
#: a line that is only a (lowercased) roman numeral up to 199, maybe with "page" and dashes
_ROMAN_PAGE = re.compile(r"([\W_]*(?:page\s+)?)(?=[ivxlc])c?(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})([\W_]*)")
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LEADING_WORD = re.compile(r"^([^\W\d_]+)")
_TRAILING_HYPHENATED = re.compile(r"([^\W\d_]+)[-\u2010]$")
_TRAILING_OTHER_HYPHEN = re.compile(r"\w[-\u2010]$")


# --- the plugin ------------------------------------------------------------------------


class StructuredChunker:
    """Chunks along headings, paragraphs and sentences within a token budget."""

    name = "structured"

    def chunk(self, doc: ParsedDocument, *, options: ChunkOptions) -> list[ChunkDraft]:
        text, pieces = _assemble(doc)
        drafts: list[ChunkDraft] = []
        for block in _blocks(pieces):
            atoms = _atoms(text, block.start, block.end, options.max_tokens)
            for start, end in _pack(text, atoms, options):
                chunk_text = text[start:end]
                pages = sorted({
                    p.page for p in block.pieces
                    if p.page is not None and p.start < end and start < p.end
                })
                drafts.append(ChunkDraft(
                    text=chunk_text,
                    token_count=count_tokens(chunk_text),
                    heading_path=list(block.path),
                    pages=pages,
                    char_start=start,
                    char_end=end,
                ))
        return drafts


@hookimpl
def register_chunkers(register: Callable[[Any], None]) -> None:
    register(StructuredChunker())


def normalise_document(doc: ParsedDocument) -> str:
    """The normalised text of ``doc`` that chunk spans index (see the module docstring)."""
    return _assemble(doc)[0]


# --- steps 1 to 3: normalise, drop running headers and footers, assemble ----------------


@dataclass
class _Piece:
    """A normalised section placed in the document text at ``[start, end)``."""

    start: int
    end: int
    page: int | None
    path: tuple[str, ...]
    kind: str


def _assemble(doc: ParsedDocument) -> tuple[str, list[_Piece]]:
    sections = doc.sections
    lines = [prepare(s.text).split("\n") for s in sections]
    running = _running_lines(sections, lines)
    raw = [
        "\n".join(line for j, line in enumerate(ls) if (i, j) not in running)
        for i, ls in enumerate(lines)
    ]
    evidence = HyphenEvidence.from_texts(raw)

    parts: list[str] = []
    pieces: list[_Piece] = []
    pos = 0
    for section, body in zip(sections, raw, strict=True):
        text = normalise_block(body, keep_lines=section.kind in _KEEP_LINES, evidence=evidence)
        if not text:
            continue
        piece = _Piece(0, 0, section.page, tuple(section.heading_path), section.kind)
        if pieces:
            prev = pieces[-1]
            sep = "\n\n"
            if _continues(prev, piece):
                glue = _hyphen_glue(parts[-1], text, evidence)
                if glue == "drop":
                    parts[-1] = parts[-1][:-1]
                    prev.end -= 1
                    pos -= 1
                    sep = ""
                elif glue == "keep":
                    sep = ""
                elif not ends_sentence(parts[-1]):
                    sep = " "
            parts.append(sep)
            pos += len(sep)
        piece.start, piece.end = pos, pos + len(text)
        parts.append(text)
        pieces.append(piece)
        pos += len(text)
    return "".join(parts), pieces


def _continues(prev: _Piece, nxt: _Piece) -> bool:
    """Whether ``nxt`` is the next page of the same run of text as ``prev``."""
    return (
        prev.page is not None and nxt.page is not None and nxt.page != prev.page
        and prev.path == nxt.path and "heading" not in (prev.kind, nxt.kind)
    )


def _hyphen_glue(left: str, right: str, evidence: HyphenEvidence) -> str | None:
    """For a page ending in a hyphenated word: "drop" the hyphen, "keep" it, or None."""
    m = _TRAILING_HYPHENATED.search(left)
    w = _LEADING_WORD.match(right)
    if m and w:
        return "drop" if join_across_break(m[1], w[1], evidence) else "keep"
    if _TRAILING_OTHER_HYPHEN.search(left) and right[:1].isalnum():
        return "keep"
    return None


def _line_key(line: str) -> str:
    """How header and footer lines compare: case-folded, spaces collapsed, numbers "#"
    (a line that is only a roman numeral, such as "- iv -", counts as a number).

    A line with numbers and more than ``_MAX_NUMBERED_WORDS`` other words keeps its
    numbers, so body lines that differ only in a figure ("Step 3 of the ...") do not
    match each other; only an exact repeat makes such a line a running one.
    """
    key = _SPACES.sub(" ", line).strip().casefold()
    if _NUMBER.search(key):
        words = [w for w in key.split() if not _NUMBER.fullmatch(w.strip("-–—|·.,:()[]"))]
        return _NUMBER.sub("#", key) if len(words) <= _MAX_NUMBERED_WORDS else key
    return _ROMAN_PAGE.sub(r"\1#\2", key) if _ROMAN_PAGE.fullmatch(key) else key


def _running_lines(sections: Sequence[Section],
                   lines: Sequence[list[str]]) -> set[tuple[int, int]]:
    """(section index, line index) of every running header or footer line."""
    by_page: dict[int, list[tuple[int, int]]] = {}
    for i, section in enumerate(sections):
        if section.page is None:
            continue
        spots = by_page.setdefault(section.page, [])
        spots.extend((i, j) for j, line in enumerate(lines[i]) if line.strip())
    if len(by_page) < 2:
        return set()
    needed = max(2, math.ceil(len(by_page) * _REPEAT_SHARE))

    def zones(spots: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], ...]:
        return spots[:_ZONE_LINES], spots[-_ZONE_LINES:]

    seen: tuple[dict[str, set[int]], dict[str, set[int]]] = ({}, {})
    for page, spots in by_page.items():
        for zone, zone_spots in enumerate(zones(spots)):
            for i, j in zone_spots:
                seen[zone].setdefault(_line_key(lines[i][j]), set()).add(page)

    running: set[tuple[int, int]] = set()
    for spots in by_page.values():
        for zone, zone_spots in enumerate(zones(spots)):
            for i, j in zone_spots:
                if len(seen[zone][_line_key(lines[i][j])]) >= needed:
                    running.add((i, j))
    return running


# --- step 4: blocks --------------------------------------------------------------------


@dataclass
class _Block:
    path: tuple[str, ...]
    pieces: list[_Piece]
    heading_only: bool

    @property
    def start(self) -> int:
        return self.pieces[0].start

    @property
    def end(self) -> int:
        return self.pieces[-1].end


def _blocks(pieces: list[_Piece]) -> list[_Block]:
    blocks: list[_Block] = []
    for piece in pieces:
        block = blocks[-1] if blocks else None
        if block is not None and piece.kind != "heading":
            if piece.path == block.path:
                block.pieces.append(piece)
                block.heading_only = False
                continue
            if block.heading_only and piece.path[: len(block.path)] == block.path:
                block.path = piece.path
                block.pieces.append(piece)
                block.heading_only = False
                continue
        blocks.append(_Block(piece.path, [piece], heading_only=piece.kind == "heading"))
    return blocks


# --- step 5: atoms ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Atom:
    start: int
    end: int
    tokens: int
    level: int  # strength of the boundary before it


def _atoms(text: str, start: int, end: int, max_tokens: int) -> list[_Atom]:
    atoms: list[_Atom] = []
    para_start = start
    for m in [*_PARAGRAPH_BREAK.finditer(text, start, end), None]:
        para_end = end if m is None else m.start()
        for n, (s, e) in enumerate(sentence_spans(text, para_start, para_end)):
            level = _PARAGRAPH if n == 0 else _SENTENCE
            tokens = count_tokens(text[s:e])
            if tokens <= max_tokens:
                atoms.append(_Atom(s, e, tokens, level))
                continue
            for k, (ws, we) in enumerate(word_spans(text, s, e)):
                word_level = level if k == 0 else _WORD
                tokens = count_tokens(text[ws:we])
                if tokens <= max_tokens:
                    atoms.append(_Atom(ws, we, tokens, word_level))
                    continue
                units = [(ws + a, ws + b) for a, b in token_units(text[ws:we])]
                for p in range(0, len(units), max_tokens):
                    group = units[p:p + max_tokens]
                    atoms.append(_Atom(group[0][0], group[-1][1], len(group),
                                       word_level if p == 0 else _PIECE))
        if m is not None:
            para_start = m.end()
    return atoms


# --- steps 6 and 7: pack and tidy ------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    start: int
    end: int
    tokens: int


def _pack(text: str, atoms: list[_Atom], options: ChunkOptions) -> list[tuple[int, int]]:
    budget = options.max_tokens
    overlap_wanted = min(options.overlap_tokens, budget // 2)
    chunks: list[_Chunk] = []
    previous: tuple[int, int] | None = None  # the atoms new in the previous chunk
    i, n = 0, len(atoms)
    while i < n:
        start, overlap = atoms[i].start, 0
        if previous is not None:
            wanted = min(overlap_wanted, budget - atoms[i].tokens)
            start, overlap = _overlap(text, atoms, *previous, wanted, default=start)
        total, k = overlap, i
        while k < n and total + atoms[k].tokens <= budget:
            total += atoms[k].tokens
            k += 1
        end = k if k == n else _break(atoms, i, k, overlap, budget)
        end = _avoid_tiny_tail(atoms, i, end, options.min_tokens, budget - overlap_wanted)
        new = sum(a.tokens for a in atoms[i:end])
        chunks.append(_Chunk(start, atoms[end - 1].end, overlap + new))
        previous = (i, end)
        i = end
    return [(c.start, c.end) for c in chunks if c.tokens >= options.min_tokens]


def _avoid_tiny_tail(atoms: list[_Atom], i: int, end: int, min_tokens: int, room: int) -> int:
    """Move the end of a chunk back when what would follow it is under ``min_tokens``.

    Greedy packing only leaves a tail when the tail did not fit, so it can never simply be
    merged into the chunk before; instead that chunk hands its last atoms to the tail until
    the tail holds ``min_tokens``, as long as the tail (with a full overlap) fits in
    ``room``. When it cannot, the tail stays as it is, kept with its overlap if that
    reaches ``min_tokens``.
    """
    if end == len(atoms):
        return end
    tail = 0
    for j in range(end, len(atoms)):
        tail += atoms[j].tokens
        if tail >= min_tokens:
            return end
    for b in range(end - 1, i, -1):
        tail += atoms[b].tokens
        if tail > room:
            break
        if tail >= min_tokens:
            return b
    return end


def _break(atoms: list[_Atom], i: int, k: int, overlap: int, budget: int) -> int:
    """Where a full chunk of atoms ``i..k-1`` ends: the index of the next chunk's first atom."""
    best: int | None = None
    total = overlap
    for b in range(i + 1, k + 1):
        total += atoms[b - 1].tokens
        if total >= budget * _EARLY_BREAK_FILL and (
                best is None or atoms[b].level >= atoms[best].level):
            best = b
    return k if best is None else best


def _overlap(text: str, atoms: list[_Atom], lo: int, hi: int, wanted: int, *,
             default: int) -> tuple[int, int]:
    """The start and token count of the overlap taken from atoms ``lo..hi-1``: whole
    trailing atoms within ``wanted`` tokens, else trailing words of the last atom."""
    if wanted <= 0:
        return default, 0
    tokens, j = 0, hi
    while j > lo and tokens + atoms[j - 1].tokens <= wanted:
        tokens += atoms[j - 1].tokens
        j -= 1
    if j < hi:
        return atoms[j].start, tokens
    last = atoms[hi - 1]
    start = default
    for ws, we in reversed(word_spans(text, last.start, last.end)[1:]):
        cost = count_tokens(text[ws:we])
        if tokens + cost > wanted:
            break
        tokens += cost
        start = ws
    return start, tokens
