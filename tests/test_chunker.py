"""The built-in ``structured`` chunker plugin."""

from __future__ import annotations

import importlib.metadata
import random
import re

import pluggy
import pytest

from syllabus.contracts import (
    PROJECT,
    ChunkDraft,
    Chunker,
    ChunkOptions,
    ParsedDocument,
    Section,
    hookspecs,
)
from syllabus.plugins.chunkers import structured
from syllabus.plugins.chunkers._text import count_tokens, sentence_spans, token_units
from syllabus.plugins.chunkers.structured import StructuredChunker, normalise_document

WORDS = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma",
    "omega", "river", "stone", "cloud", "harbour", "lantern", "meadow", "copper", "violet",
    "orchard",
]


def sentences(rng: random.Random, n: int, words: int = 9) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "." for _ in range(n)]


def paragraphs(seed: int, n: int, per: int = 5) -> str:
    rng = random.Random(seed)
    return "\n\n".join(" ".join(sentences(rng, per)) for _ in range(n))


def doc_of(*sections: Section, media_type: str = "text/markdown") -> ParsedDocument:
    pages = max((s.page or 0 for s in sections), default=0)
    return ParsedDocument(media_type=media_type, pages=pages, sections=list(sections))


def chunk(doc: ParsedDocument, **options: int) -> list[ChunkDraft]:
    return StructuredChunker().chunk(doc, options=ChunkOptions(**options))


def assert_spans(doc: ParsedDocument, chunks: list[ChunkDraft]) -> None:
    full = normalise_document(doc)
    for c in chunks:
        assert full[c.char_start:c.char_end] == c.text
        assert c.token_count == count_tokens(c.text)


# --- token counting --------------------------------------------------------------------


def test_count_tokens_approximates_subwords() -> None:
    assert count_tokens("") == 0
    assert count_tokens("  \n\t ") == 0
    assert count_tokens("the cat sat") == 3
    assert count_tokens("internationalization") == 4  # 20 letters -> ceil(20 / 6)
    assert count_tokens("1234567") == 3  # digits in groups of three
    assert count_tokens("Hi, you!") == 4
    assert count_tokens("日本語") == 3
    text = "Ünïcode wörds, 42 numbers_and snake_case 日本 https://example.com/a?b=1"
    assert count_tokens(text) == sum(1 for _ in token_units(text))
    # whitespace never holds a token, so counts add up across it
    assert count_tokens("alpha beta, gamma") == count_tokens("alpha") + count_tokens("beta, gamma")


# --- normalisation ---------------------------------------------------------------------


def test_nfkc_ligatures_full_width_and_spaces() -> None:
    doc = doc_of(Section(text="The \ufb01nancial \ufb02ow was \uff11\uff12\uff13\u00a0units,"
                              "  sur\u00adprisingly\u200b   so.\n\n\n\nNext   para."))
    assert normalise_document(doc) == "The financial flow was 123 units, surprisingly so.\n\nNext para."
    (only,) = chunk(doc, min_tokens=1)
    assert "financial" in only.text and "123" in only.text and "\u00ad" not in only.text


def test_hyphenation_across_line_breaks() -> None:
    doc = doc_of(Section(text=(
        "The manage-\nment of inter-\nnational teams is a well-known problem.\n"
        "It is well-\nknown to Jean-\nPaul, from 1990-\n1995, and so-\n  called experts."
    )))
    text = normalise_document(doc)
    assert "management of international teams" in text
    # "well-known" occurs on one line elsewhere, so the hyphen of "well-\nknown" is real
    assert "It is well-known to" in text
    # an uppercase or numeric continuation keeps the hyphen and loses the break
    assert "Jean-Paul" in text and "1990-1995" in text
    # without evidence the simple rule joins
    assert "socalled experts" in text
    assert "\n" not in text


def test_list_sections_keep_their_lines() -> None:
    doc = doc_of(Section(text="- first   item\n- second item\n\n- third", kind="list"))
    assert normalise_document(doc) == "- first item\n- second item\n\n- third"


def test_sentence_splitting_respects_abbreviations() -> None:
    text = "See e.g. Fig. 3 for Dr. Smith's data. It grew 3.5 times! Why? J. R. R. Tolkien wrote."
    got = [text[s:e] for s, e in sentence_spans(text)]
    assert got == ["See e.g. Fig. 3 for Dr. Smith's data.", "It grew 3.5 times!", "Why?",
                   "J. R. R. Tolkien wrote."]


# --- budget, overlap, structure --------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [16, 40, 128, 384])
def test_budget_respected_and_nothing_lost(max_tokens: int) -> None:
    doc = doc_of(Section(text=paragraphs(1, 12), heading_path=["Guide"]))
    chunks = chunk(doc, max_tokens=max_tokens, overlap_tokens=8, min_tokens=1)
    assert len(chunks) >= (2 if max_tokens < 384 else 1)
    assert all(0 < c.token_count <= max_tokens for c in chunks)
    assert_spans(doc, chunks)
    # the chunks cover every character of the text between them
    full = normalise_document(doc)
    covered = set()
    for c in chunks:
        covered.update(range(c.char_start, c.char_end))
    assert all(i in covered for i, ch in enumerate(full) if not ch.isspace())


def test_overlap_between_consecutive_chunks_of_a_section() -> None:
    doc = doc_of(Section(text=paragraphs(2, 8), heading_path=["Guide"]))
    chunks = chunk(doc, max_tokens=64, overlap_tokens=16)
    assert len(chunks) >= 4
    full = normalise_document(doc)
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert nxt.char_start < prev.char_end, "consecutive chunks must overlap"
        assert nxt.char_start > prev.char_start, "and make progress"
        shared = full[nxt.char_start:prev.char_end]
        assert prev.text.endswith(shared) and nxt.text.startswith(shared)
        assert 0 < count_tokens(shared) <= 16
        # sentences here are about 10 tokens, so the overlap is made of whole sentences
        assert re.match(r"[A-Z]", shared) and full[nxt.char_start - 2:nxt.char_start] in {". ", "\n\n"}


def test_chunks_prefer_paragraph_boundaries() -> None:
    rng = random.Random(3)
    paras = [" ".join(sentences(rng, 3)) for _ in range(6)]  # ~30 tokens each
    doc = doc_of(Section(text="\n\n".join(paras)))
    chunks = chunk(doc, max_tokens=80, overlap_tokens=0)
    assert len(chunks) >= 3
    for c in chunks:
        # each chunk is whole paragraphs: it starts and ends where a paragraph does
        assert any(p.startswith(c.text[:20]) for p in paras)
        assert any(p.endswith(c.text[-20:]) for p in paras)


def test_heading_boundaries_are_never_crossed() -> None:
    doc = doc_of(
        Section(text="Setup", heading_path=["Setup"], kind="heading"),
        Section(text=paragraphs(4, 3), heading_path=["Setup"]),
        Section(text=paragraphs(5, 1, per=2), heading_path=["Setup", "Linux"]),
        Section(text=paragraphs(6, 2), heading_path=["Setup", "Linux"]),
        Section(text="Usage", heading_path=[], kind="heading"),
        Section(text=paragraphs(7, 3), heading_path=["Usage"]),
        Section(text="Tiny.", heading_path=["Empty"]),
    )
    chunks = chunk(doc, max_tokens=48, overlap_tokens=12)
    assert_spans(doc, chunks)
    full = normalise_document(doc)
    bounds = {}
    for path in (("Setup",), ("Setup", "Linux"), ("Usage",)):
        mine = [c for c in chunks if tuple(c.heading_path) == path]
        assert mine, path
        bounds[path] = (min(c.char_start for c in mine), max(c.char_end for c in mine))
    # the blocks do not interleave, so no chunk holds text of two heading paths
    spans = sorted(bounds.values())
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))
    # the heading's text opens its own block's first chunk, not the previous block's last
    assert chunks[0].text.startswith("Setup\n\n")
    usage = [c for c in chunks if c.heading_path == ["Usage"]]
    assert usage[0].text.startswith("Usage\n\n")
    assert not any(c.text.rstrip().endswith("Usage") for c in chunks)
    # a block under min_tokens is dropped
    assert "Tiny." in full and not any("Tiny." in c.text for c in chunks)
    # no overlap across a heading change
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        if prev.heading_path != nxt.heading_path:
            assert nxt.char_start > prev.char_end


def test_long_paragraph_without_punctuation_splits_on_words() -> None:
    rng = random.Random(8)
    words = [rng.choice(WORDS) for _ in range(3000)]
    doc = doc_of(Section(text=" ".join(words)))
    chunks = chunk(doc, max_tokens=100, overlap_tokens=10)
    assert len(chunks) > 20
    assert all(c.token_count <= 100 for c in chunks)
    assert_spans(doc, chunks)
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert prev.char_start < nxt.char_start < prev.char_end  # word-level overlap
    # words are never cut
    assert all(set(c.text.split()) <= set(WORDS) for c in chunks)


def test_a_word_longer_than_the_budget_is_cut_at_token_boundaries() -> None:
    blob = "Q" * 1000  # 167 tokens
    doc = doc_of(Section(text=f"Here it is: {blob} and done."))
    chunks = chunk(doc, max_tokens=32, overlap_tokens=4, min_tokens=1)
    assert all(c.token_count <= 32 for c in chunks)
    assert_spans(doc, chunks)
    assert "".join(re.sub(r"[^Q]", "", c.text) for c in chunks).count("Q") >= 1000


def test_tiny_tail_gets_enough_new_text() -> None:
    rng = random.Random(9)
    short = [w for w in WORDS if len(w) <= 6]  # one token each
    body = [" ".join(rng.choice(short) for _ in range(5)).capitalize() + "." for _ in range(10)]
    assert [count_tokens(b) for b in body] == [6] * 10
    doc = doc_of(Section(text=" ".join(body) + " Done now."))  # 60 + 3 tokens
    full = normalise_document(doc)
    chunks = chunk(doc, max_tokens=60, overlap_tokens=8, min_tokens=8)
    assert len(chunks) == 2 and all(c.token_count <= 60 for c in chunks)
    first, last = chunks
    # greedy packing would fill the first chunk with all ten sentences and leave "Done now."
    # (3 new tokens) alone after the overlap; the first chunk gives up its last sentence
    assert first.text.endswith(body[8])
    assert last.text.endswith(f"{body[9]} Done now.")
    assert count_tokens(full[first.char_end:last.char_end]) >= 8
    assert_spans(doc, chunks)


def test_below_min_tokens_is_dropped() -> None:
    doc = doc_of(Section(text="Hello world."), Section(text="Short.", heading_path=["B"]))
    assert chunk(doc, min_tokens=4) == []
    assert [c.text for c in chunk(doc, min_tokens=2)] == ["Hello world.", "Short."]


def test_empty_documents_give_no_chunks() -> None:
    assert chunk(doc_of()) == []
    assert chunk(doc_of(Section(text="  \n\n \u00ad "), Section(text="", page=1))) == []


def test_output_is_deterministic() -> None:
    doc = doc_of(*(Section(text=paragraphs(i, 3), heading_path=[f"H{i % 2}"]) for i in range(6)))
    first = [c.model_dump() for c in chunk(doc, max_tokens=50, overlap_tokens=10)]
    again = [c.model_dump() for c in StructuredChunker().chunk(
        ParsedDocument.model_validate(doc.model_dump()), options=ChunkOptions(max_tokens=50,
                                                                              overlap_tokens=10))]
    assert first == again and len(first) > 5


# --- paged documents -------------------------------------------------------------------


def paged_report() -> tuple[ParsedDocument, list[str]]:
    rng = random.Random(10)
    uniques = []
    pages = []
    for n in range(1, 5):
        unique = f"Quarter {['one', 'two', 'three', 'four'][n - 1]} revenue notes follow."
        uniques.append(unique)
        body = "\n".join(sentences(rng, 4))
        pages.append(Section(
            text=(f"ACME Corp \u2014 Annual Report 2024\n  Confidential  \n{unique}\n{body}\n"
                  f"Step {n} of the plan continues with the same careful review of all the notes.\n"
                  f"- {n} -\nPage {n} of 4"),
            page=n, kind="page",
        ))
    return doc_of(*pages, media_type="application/pdf"), uniques


def test_running_headers_and_footers_are_removed() -> None:
    doc, uniques = paged_report()
    text = normalise_document(doc)
    for gone in ("ACME", "Annual Report", "Confidential", "Page 1 of 4", "Page 4 of 4", "- 2 -"):
        assert gone not in text
    for kept in uniques:
        assert kept in text
    # a long line that differs only in its number is body text, not a footer
    for n in range(1, 5):
        assert f"Step {n} of the plan continues" in text
    chunks = chunk(doc, max_tokens=64, overlap_tokens=8)
    assert chunks and not any("Confidential" in c.text or "of 4" in c.text for c in chunks)
    assert_spans(doc, chunks)


def test_two_page_documents_need_the_line_on_both_pages() -> None:
    doc = doc_of(
        Section(text="Handbook\nOnly on page one.\nFirst page body text ends here.\n1", page=1),
        Section(text="Handbook\nSecond page body text ends here.\n2", page=2),
        media_type="application/pdf",
    )
    text = normalise_document(doc)
    assert "Handbook" not in text and not re.search(r"\b[12]\b", text)
    assert "Only on page one." in text and "Second page body" in text


def test_roman_page_numbers_are_footers_but_words_are_not() -> None:
    sections = [
        Section(text=f"Preface body {w} starts.\nMore text on this page.\n- {r} -", page=n)
        for n, (w, r) in enumerate([("one", "i"), ("two", "ii"), ("three", "iii")], start=1)
    ]
    sections.append(Section(text="Civil matters.\nMild.\nLast page.\n- iv -", page=4))
    text = normalise_document(doc_of(*sections, media_type="application/pdf"))
    assert not re.search(r"- [iv]+ -", text)
    assert "Civil matters." in text and "Mild." in text


def test_repeated_line_in_the_middle_of_pages_is_kept() -> None:
    sections = [
        Section(text=f"Unique top {w}.\nA\nB\nC\nRepeated body line.\nD\nE\nF\nEnd {w}.", page=n)
        for n, w in enumerate(["one", "two", "three"], start=1)
    ]
    text = normalise_document(doc_of(*sections, media_type="application/pdf"))
    assert text.count("Repeated body line.") == 3
    assert all(f"Unique top {w}." in text for w in ["one", "two", "three"])


def test_paragraph_continues_across_a_page_break() -> None:
    doc = doc_of(
        Section(text="Header\nThe results of the\n1", page=1),
        Section(text="Header\nexperiment show a clear gain. The manage-\n2", page=2),
        Section(text="Header\nment of risk is separate.\n3", page=3),
        Section(text="Header\nA new page starts here.\n4", page=4),
        media_type="application/pdf",
    )
    text = normalise_document(doc)
    assert text == ("The results of the experiment show a clear gain. The management of risk "
                    "is separate.\n\nA new page starts here.")
    chunks = chunk(doc, max_tokens=16, overlap_tokens=4, min_tokens=2)
    assert_spans(doc, chunks)
    first = next(c for c in chunks if "results of the experiment" in c.text)
    assert first.pages == [1, 2]
    assert next(c for c in chunks if "management of risk" in c.text).pages == [2, 3]
    # the last chunk starts with its overlap from page 3
    assert chunks[-1].text.endswith("A new page starts here.") and chunks[-1].pages == [3, 4]
    # without overlap: a chunk lists every page it touches, the middle one included
    last = chunk(doc, max_tokens=16, overlap_tokens=0, min_tokens=2)[-1]
    assert last.text == "The management of risk is separate.\n\nA new page starts here."
    assert last.pages == [2, 3, 4]
    assert all(c.pages == sorted(set(c.pages)) for c in chunks)


def test_non_paged_documents_have_no_pages() -> None:
    chunks = chunk(doc_of(Section(text=paragraphs(11, 4))), max_tokens=40)
    assert chunks and all(c.pages == [] for c in chunks)


# --- the plugin ------------------------------------------------------------------------


def test_registered_through_the_entry_point() -> None:
    (ep,) = [ep for ep in importlib.metadata.entry_points(group="syllabus")
             if ep.name == "structured-chunker"]
    module = ep.load()
    assert module is structured
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(module, name=ep.name)
    pm.check_pending()
    registered: list[object] = []
    pm.hook.register_chunkers(register=registered.append)
    (obj,) = registered
    assert isinstance(obj, Chunker)
    assert obj.name == "structured"
    got = obj.chunk(doc_of(Section(text=paragraphs(12, 2))), options=ChunkOptions())
    assert got and isinstance(got[0], ChunkDraft)
