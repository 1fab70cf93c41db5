"""Shallow text analysis for the ``extractive`` teacher (stdlib only).

No tagger or parser: sentences come from punctuation with an abbreviation list, words from
one regular expression that keeps offsets into the sentence, parts of speech from closed
word classes plus a lexicon of common verbs (with their inflections), and stems from a
few suffix rules. That is enough for the rule-based question templates and the overlap
scores of the other tasks, and it keeps every result reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "SUBORDINATORS",
    "ADJECTIVES",
    "AUXILIARIES",
    "COMPARATIVES",
    "NOUN_MODIFIERS",
    "DETERMINERS",
    "PREPOSITIONS",
    "PRONOUNS",
    "STOPWORDS",
    "WH_WORDS",
    "Sentence",
    "Token",
    "content_stems",
    "content_words",
    "is_adverb",
    "is_number_word",
    "join_words",
    "lemma_of",
    "split_sentences",
    "stem",
    "token_f1",
    "tokenize",
    "verb_form",
    "word_count",
]

# --- closed word classes ---------------------------------------------------------------

DETERMINERS = frozenset({
    "a", "an", "the", "this", "that", "these", "those", "its", "their", "his", "her", "our",
    "your", "my", "some", "any", "each", "every", "no", "both", "all", "most", "many",
    "several", "few", "more", "less", "much", "other", "another", "such", "either", "neither",
})
PREPOSITIONS = frozenset({
    "about", "above", "across", "after", "against", "along", "among", "around", "as", "at",
    "before", "behind", "below", "beneath", "beside", "between", "beyond", "by", "despite",
    "down", "during", "except", "for", "from", "in", "inside", "into", "like", "near", "of",
    "off", "on", "onto", "out", "outside", "over", "per", "since", "through", "throughout",
    "to", "toward", "towards", "under", "underneath", "until", "up", "upon", "via", "with",
    "within", "without",
})
PRONOUNS = frozenset({
    "i", "me", "we", "us", "you", "he", "him", "she", "her", "it", "they", "them", "this",
    "these", "those", "that", "one", "someone", "something", "everyone", "everything",
})
#: auxiliary -> (lemma, tense, plural?) ; "has"/"have"/"had" and "do" forms also serve as
#: main verbs, which the clause analysis decides
AUXILIARIES: dict[str, tuple[str, str, bool | None]] = {
    "is": ("be", "present", False), "are": ("be", "present", True),
    "was": ("be", "past", False), "were": ("be", "past", True),
    "am": ("be", "present", False),
    "has": ("have", "present", False), "have": ("have", "present", True),
    "had": ("have", "past", None),
    "does": ("do", "present", False), "do": ("do", "present", True), "did": ("do", "past", None),
    "can": ("can", "modal", None), "could": ("could", "modal", None),
    "will": ("will", "modal", None), "would": ("would", "modal", None),
    "shall": ("shall", "modal", None), "should": ("should", "modal", None),
    "may": ("may", "modal", None), "might": ("might", "modal", None),
    "must": ("must", "modal", None),
}
WH_WORDS = frozenset({"what", "which", "who", "whom", "whose", "when", "where", "why", "how"})
CONJUNCTIONS = frozenset({"and", "or", "but", "nor", "yet", "so"})
SUBORDINATORS = frozenset({
    "after", "although", "as", "because", "before", "if", "once", "since", "though", "unless",
    "until", "when", "whenever", "where", "whereas", "while", "whilst",
})

STOPWORDS = frozenset({
    *DETERMINERS, *PREPOSITIONS, *PRONOUNS, *AUXILIARIES, *WH_WORDS, *CONJUNCTIONS,
    *SUBORDINATORS,
    "be", "been", "being", "not", "no", "nor", "than", "then", "there", "here", "also", "very",
    "only", "just", "so", "too", "even", "still", "yet", "again", "ever", "often", "usually",
    "always", "never", "sometimes", "can't", "don't", "doesn't", "isn't", "aren't", "won't",
    "mine", "ours", "yours", "hers", "theirs", "itself", "themselves", "himself", "herself",
    "myself", "ourselves", "yourself", "own", "same", "s", "t", "etc", "e.g", "i.e", "eg", "ie",
    "way", "thing", "things", "lot", "lots", "really", "quite", "rather", "would", "could",
    "get", "got", "make", "made", "let", "use", "used", "using", "like", "well", "however",
    "therefore", "thus", "instead", "whether", "which", "while", "into", "onto", "whose",
})

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000, "million": 10**6,
    "billion": 10**9, "dozen": 12, "hundreds": 100, "thousands": 1000, "millions": 10**6,
    "dozens": 12, "tens": 10,
}


def is_number_word(low: str) -> bool:
    """A numeral: digits (``2,000``, ``3.5``, ``40%``) or an English number word."""
    if re.fullmatch(r"\d+(?:[.,]\d+)*%?", low):
        return True
    parts = low.split("-")
    return all(p in _NUMBER_WORDS for p in parts)


_ADVERBS = frozenset({
    "also", "often", "usually", "always", "never", "sometimes", "still", "then", "now", "even",
    "just", "only", "already", "soon", "first", "rarely", "seldom", "once", "again", "ever",
    "generally", "typically", "normally", "mostly", "mainly", "largely", "quickly", "slowly",
    "gradually", "constantly", "immediately", "simply", "actually", "frequently",
    "together", "almost", "nearly", "rather", "quite", "very", "too", "further", "instead",
    "forward", "forwards", "backward", "backwards", "inward", "inwards", "outward", "outwards",
    "upward", "upwards", "downward", "downwards", "home", "away", "apart", "alone", "ahead",
    "aside", "indoors", "outdoors", "overnight", "abroad",
})
_NOT_ADVERBS = frozenset({
    "early", "fly", "apply", "supply", "reply", "family", "july", "italy", "lily", "belly",
    "jelly", "holly", "ally", "rally", "tally", "bully", "only", "daily", "weekly", "monthly",
    "yearly", "likely", "friendly", "costly", "lonely", "lovely", "ugly", "silly", "rely",
    "assembly", "butterfly", "dragonfly", "firefly", "hoverfly", "poly", "anomaly",
})


def is_adverb(low: str) -> bool:
    return low in _ADVERBS or (len(low) > 4 and low.endswith("ly") and low not in _NOT_ADVERBS)


# --- the verb lexicon ------------------------------------------------------------------

_IRREGULAR = """
arise arose arisen; bear bore borne; beat beat beaten; become became become;
begin began begun; bend bent bent; bind bound bound; bite bit bitten; bleed bled bled;
blow blew blown; break broke broken; breed bred bred; bring brought brought;
build built built; burn burnt burnt; buy bought bought; catch caught caught;
choose chose chosen; cling clung clung; come came come; cost cost cost; cut cut cut;
deal dealt dealt; dig dug dug; draw drew drawn; drink drank drunk; drive drove driven;
eat ate eaten; fall fell fallen; feed fed fed; feel felt felt; fight fought fought;
find found found; flee fled fled; fly flew flown; forget forgot forgotten;
freeze froze frozen; get got got; give gave given; go went gone; grind ground ground;
grow grew grown; hang hung hung; hear heard heard; hide hid hidden; hit hit hit;
hold held held; hurt hurt hurt; keep kept kept; know knew known; lay laid laid;
lead led led; leave left left; lend lent lent; let let let; lie lay lain; light lit lit;
lose lost lost; make made made; mean meant meant; meet met met; pay paid paid;
put put put; read read read; ride rode ridden; ring rang rung; rise rose risen;
run ran run; say said said; see saw seen; seek sought sought; sell sold sold;
send sent sent; set set set; shake shook shaken; shed shed shed; shine shone shone;
shoot shot shot; show showed shown; shrink shrank shrunk; shut shut shut; sing sang sung;
sink sank sunk; sit sat sat; sleep slept slept; slide slid slid; sow sowed sown;
speak spoke spoken; spend spent spent; spin spun spun; split split split;
spread spread spread; stand stood stood; steal stole stolen; stick stuck stuck;
sting stung stung; strike struck struck; swarm swarmed swarmed; sweep swept swept;
swim swam swum; swing swung swung; take took taken; teach taught taught;
tear tore torn; tell told told; think thought thought; throw threw thrown;
understand understood understood; wake woke woken; wear wore worn; weave wove woven;
win won won; wind wound wound; write wrote written; overwinter overwintered overwintered
"""

_REGULAR = """
absorb accept add affect aim allow alter appear apply approach arrive ask assess attach
attack attract avoid bottle buzz calculate call cap carry cause change check chew circle
clean clear close cluster coat collect combine communicate compare consider consist consume
contain continue contract control convert cool count cover crawl create crowd crystallise
crystallize damage dance decide decline decode decrease defend deliver depend deposit
describe destroy detect determine develop die differ disappear discover dispose divide
double dry dust emerge enable encode encourage end enter estimate evaporate examine exist
exit expand explain explore extract fan fertilise fertilize fill filter finish fix float
flow follow forage form fuel gather generate glue guard guide happen harvest hatch head heat
heft help hibernate hum identify imitate improve include increase indicate infest inform
inspect install insulate introduce invade involve join kill label last learn lengthen lift
line list live look loop lower maintain manage mark mate matter measure migrate mix monitor
move need nest notice observe obtain occupy occur offer open orient pack pass perform pick
place plan plant point pollinate possess pour prefer prepare preserve prevent process
produce protect provide pull pump pupate push raise reach rear receive recognise recognize
recruit reduce regulate regurgitate release rely remain remove repair repeat replace report
represent reproduce require requeen resist rest retain return reveal rob rotate sample save
scent scout seal search secrete seem select separate settle share shiver signal slow smoke
solve spill sprinkle start starve stay stop store streak stream succeed suffer suggest
supply support surround survive tend thicken touch trace train transfer transform transmit
transport travel treat try turn uncap unite use vary ventilate vibrate visit vote wag
waggle wait walk want warm wash watch weaken weigh work worry
struggle cope thrive tolerate benefit risk lack fail tilt tip drain condense drip soak chill
confirm shift fade promote link belong range exceed drop climb peak swell navigate translate
perceive sense smell taste remember recall advertise abandon merge inseminate mature age
moult ripen concentrate invert digest comprise demonstrate prove argue claim note record
publish study burn learn dream spell leap spill sting hover land pollinate deter repel
prepare wander descend ascend enlarge shrink narrow widen outnumber replace provide react
respond emit attract mimic communicate coordinate forage rear cap construct design shape
fit heft clear avoid
"""
#: base-form verbs that, first in a sentence, usually modify a noun ("Scout bees search")
#: rather than start an imperative ("Move the hive")
NOUN_MODIFIERS = frozenset({
    "swarm", "scout", "worker", "guard", "nurse", "drone", "forage", "house", "field", "water",
    "honey", "store", "queen", "brood", "wax", "comb", "winter", "spring", "summer", "mate",
    "dance", "signal", "feed", "flow", "smoke", "cluster", "sample", "record", "study",
    "research", "work", "control", "trap", "screen", "frame", "cap", "seal", "label", "mark",
})
COMPARATIVES = frozenset({
    "longer", "shorter", "higher", "lower", "faster", "slower", "better", "worse", "further",
    "farther", "closer", "larger", "smaller", "bigger", "stronger", "weaker", "warmer",
    "colder", "earlier", "later", "more", "less", "fewer", "greater", "wider", "deeper",
})
ADJECTIVES = frozenset({
    "far", "much", "more", "less", "most", "least", "too", "so", "as", "short", "long", "high",
    "low", "warm", "cold", "cool", "strong", "weak", "full", "empty", "good", "bad", "dry",
    "wet", "damp", "large", "small", "big", "little", "heavy", "light", "hot", "busy", "quiet",
    "active", "alive", "dead", "safe", "ready", "able", "clear", "free", "open", "close",
    "present", "absent", "likely", "unlikely", "important", "common", "rare", "usual",
    "unusual", "enough", "inclined", "responsible", "essential", "vital", "gentle",
    "aggressive", "calm", "slow", "fast", "quick", "clean", "dark", "bright", "still", "true",
    "new", "old", "young", "late", "early", "fine", "poor", "rich", "steady", "stable",
})


def _regular_forms(base: str) -> tuple[str, str, str]:
    """(3rd person singular, past, -ing) of a regular verb."""
    if re.search(r"[^aeiou]y$", base):
        s, ed, ing = base[:-1] + "ies", base[:-1] + "ied", base + "ing"
    elif re.search(r"(s|x|z|ch|sh|o)$", base):
        s, ed, ing = base + "es", base + "ed", base + "ing"
    else:
        s, ed, ing = base + "s", base + "ed", base + "ing"
    if base.endswith("e"):
        ed, ing = base + "d", base[:-1] + "ing"
    elif re.search(r"^[^aeiou]*[aeiou][bdgmnprt]$", base) and base not in {"open"}:
        ed, ing = base + base[-1] + "ed", base + base[-1] + "ing"  # stop -> stopped
    return s, ed, ing


def _build_lexicon() -> dict[str, tuple[str, str]]:
    forms: dict[str, tuple[str, str]] = {}

    def add(form: str, lemma: str, kind: str) -> None:
        forms.setdefault(form, (lemma, kind))

    for entry in _IRREGULAR.split(";"):
        base, past, part = entry.split()
        s, _, ing = _regular_forms(base)
        add(base, base, "base")
        add(s, base, "3sg")
        add(past, base, "past")
        add(part, base, "part")
        add(ing, base, "ing")
    for base in _REGULAR.split() + ["burn", "learn", "dream", "spell", "smell", "leap",
                                    "spill", "sow", "show"]:
        s, ed, ing = _regular_forms(base)
        add(base, base, "base")
        add(s, base, "3sg")
        add(ed, base, "past")
        add(ing, base, "ing")
    return forms


_VERBS = _build_lexicon()
#: words that are in the lexicon but read as nouns far more often in expository prose
_MOSTLY_NOUNS = frozenset({"found", "lay", "lie", "head", "line", "list", "point", "store",
                           "mark", "place", "plant", "work", "fan", "form", "rest"})


def verb_form(low: str) -> tuple[str, str] | None:
    """``(lemma, kind)`` of a known verb form, kind one of base, 3sg, past, part, ing."""
    return _VERBS.get(low)


def lemma_of(low: str) -> str:
    """The base form of a verb (rough for verbs outside the lexicon)."""
    known = _VERBS.get(low)
    if known:
        return known[0]
    if low.endswith("ies") and len(low) > 4:
        return low[:-3] + "y"
    if re.search(r"(ch|sh|ss|x|zz|o)es$", low):
        return low[:-2]
    if low.endswith("s") and not low.endswith("ss"):
        return low[:-1]
    if low.endswith("ied"):
        return low[:-3] + "y"
    if low.endswith("ed") and len(low) > 4:
        stem_ = low[:-2]
        if re.search(r"([bdgmnprt])\1$", stem_):
            return stem_[:-1]
        if re.search(r"(at|iz|is|uc|v|rg|dg|ur|ok|as|os|us|bl|pl|tl|gl|c)$", stem_):
            return stem_ + "e"
        return stem_
    return low


# --- tokens and sentences --------------------------------------------------------------

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*%?|\w+(?:[-'\u2019.]\w+)*|[^\w\s]")


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int

    @property
    def low(self) -> str:
        return self.text.lower().replace("\u2019", "'")

    @property
    def is_word(self) -> bool:
        return self.text[0].isalnum()

    @property
    def capitalised(self) -> bool:
        return self.text[0].isupper()


def tokenize(text: str) -> list[Token]:
    return [Token(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def word_count(text: str) -> int:
    return len(re.findall(r"\S+", text))


@dataclass(frozen=True)
class Sentence:
    text: str
    #: position among the passage's sentences
    index: int
    #: position of the paragraph (or list item) the sentence sits in
    paragraph: int
    #: a heading-like line: short, with no sentence-final punctuation
    heading: bool = False


_ABBREVIATIONS = frozenset({
    "al", "approx", "c", "ca", "cf", "ch", "co", "corp", "dept", "dr", "e.g", "eg", "eq",
    "est", "fig", "figs", "i.e", "ie", "inc", "jr", "ltd", "mr", "mrs", "ms", "no", "nos",
    "p", "pp", "prof", "sec", "sen", "sr", "st", "vol", "vols", "vs", "viz", "mt",
    "gen", "col", "lt", "sgt", "capt", "rev", "hon", "u.s", "u.k", "a.m", "p.m",
})
_CLOSERS = "\"'\u201d\u2019)]"
_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)")
_BULLET = re.compile(r"^\s*(?:[-*+\u2022\u25aa\u2013]|\(?\d{1,3}[.)]|\(?[a-z][.)])\s+")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]{0,200}>")
_UNDERLINE = re.compile(r"^\s*(?:=+|-{3,}|\*{3,}|_{3,})\s*$")


def _clean_line(line: str) -> str:
    line = _MD_IMAGE.sub(" ", line)
    line = _MD_LINK.sub(r"\1", line)
    line = _HTML_TAG.sub(" ", line)
    line = re.sub(r"&(?:nbsp|amp|lt|gt|quot);", " ", line)
    line = re.sub(r"^\s*#{1,6}\s+", "", line)
    line = re.sub(r"^\s*>\s?", "", line)
    line = re.sub(r"(\*\*|__|`)", "", line)
    line = re.sub(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])", r"\1", line)
    line = re.sub(r"(?<![\w_])_(?=\S)([^_]+?)(?<=\S)_(?![\w_])", r"\1", line)
    return re.sub(r"\s+", " ", line).strip()


def _segments(text: str) -> list[tuple[str, bool]]:
    """Paragraphs and list items, hard-wrapped lines joined: (text, single_line)."""
    out: list[tuple[str, bool]] = []
    text = re.sub(r"\A\s*---\n.*?\n---[ \t]*\n", "", text, flags=re.S)  # YAML front matter
    text = re.sub(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]", "\n", text)
    for block in re.split(r"\n[ \t]*\n", text):
        current: list[str] = []
        lines = block.split("\n")
        for i, raw in enumerate(lines):
            if _UNDERLINE.match(raw):
                continue
            underlined = i + 1 < len(lines) and bool(_UNDERLINE.match(lines[i + 1]))
            starts_item = bool(_BULLET.match(raw)) or raw.lstrip().startswith("#") or underlined
            line = _clean_line(_BULLET.sub("", raw))
            if not line:
                continue
            if starts_item and current:
                out.append((" ".join(current), len(current) == 1))
                current = []
            current.append(line)
            if underlined or raw.lstrip().startswith("#"):
                out.append((" ".join(current), True))
                current = []
        if current:
            out.append((" ".join(current), len(current) == 1))
    return out


def _split_segment(seg: str) -> list[str]:
    pieces: list[str] = []
    cut = 0
    for m in _END.finditer(seg):
        stop = m.end()
        rest = seg[stop:].lstrip()
        if not rest or rest[0].islower():
            continue
        if m.group().rstrip(_CLOSERS) == ".":
            j = m.start()
            while j > cut and not seg[j - 1].isspace():
                j -= 1
            word = seg[j:m.start()].lstrip("(\"'").lower()
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
        pieces.append(seg[cut:stop].strip())
        cut = stop
    pieces.append(seg[cut:].strip())
    return [p for p in pieces if p]


def split_sentences(text: str) -> list[Sentence]:
    """The passage's sentences in order, with markdown and HTML leftovers removed.

    A sentence ends at ".", "!", "?" or "..." (closing quotes allowed) followed by space
    and a character that is not lowercase, unless the "." follows a known abbreviation
    ("e.g.", "Dr.") or an initial; decimals never end one as no space follows the point.
    Paragraphs, list items and headings (Markdown ``#``/underlined, or a short single line
    without final punctuation) always end one."""
    out: list[Sentence] = []
    for p, (seg, single) in enumerate(_segments(text)):
        for piece in _split_segment(seg):
            heading = (single and len(_split_segment(seg)) == 1
                       and piece[-1] not in ".!?:;\u2026\"'\u201d)" and word_count(piece) <= 14)
            out.append(Sentence(piece, len(out), p, heading))
    return out


# --- stems and overlap -----------------------------------------------------------------

_STEM_IRREGULAR = {
    "larvae": "larva", "pupae": "pupa", "mice": "mouse", "children": "child", "men": "man",
    "women": "woman", "people": "person", "feet": "foot", "teeth": "tooth", "geese": "goose",
    "leaves": "leaf", "lives": "life", "wives": "wife", "knives": "knife", "halves": "half",
    "shelves": "shelf", "wolves": "wolf", "bees": "bee", "trees": "tree", "data": "datum",
}


def stem(word: str) -> str:
    """A rough stem: case-folded, possessive dropped, common inflections removed."""
    w = word.lower().replace("\u2019", "'")
    w = re.sub(r"'s?$", "", w)
    if w in _STEM_IRREGULAR:
        return _STEM_IRREGULAR[w]
    known = _VERBS.get(w)
    if known and known[1] != "base":
        w = known[0]
    if re.fullmatch(r"\d[\d,]*(?:\.\d+)?%?", w):
        return w.replace(",", "")
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and re.search(r"(ss|sh|ch|x|z)es$", w):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not re.search(r"(ss|us|is)$", w):
        w = w[:-1]
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ied"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 3 and re.search(r"([bdgmnprt])\1$", w):
        w = w[:-1]
    if w.endswith("ise"):
        w = w[:-3] + "ize"
    return w


def content_words(text: str) -> list[str]:
    """Lower-cased words of ``text`` that are not stop words (numbers included)."""
    out = []
    for tok in tokenize(text):
        low = tok.low
        if tok.is_word and low not in STOPWORDS and (len(low) > 1 or low.isdigit()):
            out.append(low)
    return out


def content_stems(text: str) -> set[str]:
    return {stem(w) for w in content_words(text)}


def _answer_tokens(text: str) -> list[str]:
    """SQuAD-style normalisation: lower case, no punctuation or articles, numbers without
    thousands separators."""
    words = [t.low.replace(",", "") for t in tokenize(text) if t.is_word]
    return [w for w in words if w not in {"a", "an", "the"}]


def token_f1(prediction: str, truth: str) -> float:
    """Token-level F1 of two answers, as in the SQuAD evaluation."""
    pred, gold = _answer_tokens(prediction), _answer_tokens(truth)
    if not pred or not gold:
        return float(pred == gold)
    common: dict[str, int] = {}
    for w in pred:
        common[w] = common.get(w, 0) + 1
    overlap = 0
    for w in gold:
        if common.get(w, 0) > 0:
            overlap += 1
            common[w] -= 1
    if not overlap:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def join_words(words: Iterable[str]) -> str:
    """Join pieces of text with single spaces and tidy the space around punctuation."""
    text = " ".join(w for w in words if w)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:!?%)\]])", r"\1", text)
    text = re.sub(r"([(\[])\s+", r"\1", text)
    text = re.sub(r",\s*([?.!])", r"\1", text)
    text = re.sub(r",(\s*,)+", ",", text)
    return text.strip(" ,;")
