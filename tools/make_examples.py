"""Generate the example PDFs in ``examples/bees/`` with fpdf2.

Run from the repository root::

    python tools/make_examples.py

The output is deterministic: the creation date, producer and file id are fixed, so a
rerun with the same fpdf2 version writes identical bytes. Every page carries a running
header and a ``Page N of M`` footer (boilerplate the chunker is expected to drop). Long
words listed in ``HYPHENATION`` get soft hyphens, which fpdf2's line wrapping honours, so
some words break across lines with a hyphen; the script checks that each PDF has at
least one such break. The prose is original and released under CC0-1.0, like the rest
of ``examples/``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "bees"
FIXED_DATE = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SHY = "\u00ad"  # soft hyphen: fpdf2 may break a word here and draws a "-" when it does

#: where long words may be hyphenated at the end of a line (a small, hand-made dictionary)
HYPHENATION = {
    word.replace("-", ""): word.replace("-", SHY)
    for word in (
        "mandi-bular", "hypo-pharyngeal", "devel-opment", "repro-duction", "repro-ductive",
        "sperma-theca", "contin-uously", "haplo-diploidy", "temper-ature", "poly-ethism",
        "resis-tance", "vapori-sation", "inter-rupting", "popu-lation", "popu-lations",
        "manage-ment", "treat-ment", "treat-ments", "measure-ment", "relation-ship",
        "fertili-sation", "infest-ed", "behav-iours", "commu-nity", "phero-mone",
        "inheri-tance", "remark-ably", "secre-tions", "exten-sion", "accu-racy",
        "organ-ism", "honey-bee", "phys-ical", "taper-ing", "re-leases", "in-creases",
        "des-tined", "bee-keepers", "bee-keeper", "kilo-metre", "forag-ing", "forag-ers",
        "ex-pressed", "trick-ling", "de-veloped", "thresh-olds", "para-sitic", "con-tinent", "develop-ing", "under-standing", "individ-ual",
    )
    if "-" in word
}
HYPHENATION |= {word.capitalize(): marked.capitalize() for word, marked in HYPHENATION.items()}


@dataclass(frozen=True)
class Booklet:
    filename: str
    header: str
    title: str
    #: one list of blocks per page; a block is ("h", text) or ("p", text)
    pages: list[list[tuple[str, str]]]


COLONY = Booklet(
    filename="honeybee-colony.pdf",
    header="Apiary Notes - Honeybee Biology Series, Leaflet 1",
    title="The Honeybee Colony: Castes, Development and Division of Labour",
    pages=[
        [
            ("h", "The Honeybee Colony: Castes, Development and Division of Labour"),
            ("p", "A honeybee colony behaves less like a crowd of separate insects and more "
                  "like a single organism whose parts happen to be able to fly. In early "
                  "summer a healthy colony of the western honeybee, Apis mellifera, may hold "
                  "between twenty thousand and sixty thousand adult bees, several thousand "
                  "developing young, and a store of honey and pollen packed into sheets of "
                  "wax comb. No single bee directs this community. Its order emerges from "
                  "chemical signals, from the physical state of the comb, and from the way "
                  "each bee's tasks change as she grows older."),
            ("h", "Three kinds of bee"),
            ("p", "Every colony contains three castes. The queen is the only fully developed "
                  "female and, in a normal colony, the mother of almost every bee in the "
                  "hive. She is longer than a worker, with a tapering abdomen that extends "
                  "well past her folded wings. Her main work is laying eggs: at the height "
                  "of the season a productive queen can lay well over a thousand eggs in a "
                  "day. She also releases a blend of chemicals, often called queen "
                  "mandibular pheromone, that tells the workers she is present and holds "
                  "back the development of their ovaries."),
            ("p", "Workers are females whose reproductive organs stay undeveloped. They "
                  "carry out nearly all of the labour of the colony: they clean, feed the "
                  "young, build comb, guard the entrance and collect nectar, pollen, water "
                  "and plant resins. Drones are the males. They are stout, with very large "
                  "eyes that meet at the top of the head, and they have no sting. A drone "
                  "does no work in the hive; his only role is to mate with a young queen "
                  "from another colony during a mating flight."),
            ("p", "Sex is decided by fertilisation. A queen stores sperm from her mating "
                  "flights in an organ called the spermatheca and releases some onto each "
                  "egg as she lays it in a worker cell. Fertilised eggs develop into "
                  "females; eggs laid without sperm develop into males. This system, known "
                  "as haplodiploidy, means that a drone has a mother but no father."),
        ],
        [
            ("h", "From egg to adult"),
            ("p", "All three castes pass through the same four stages: egg, larva, pupa and "
                  "adult. The egg stands upright at the base of a cell and hatches after "
                  "about three days. The tiny white larva that emerges is fed almost "
                  "continuously by nurse bees, and it grows so fast that its weight "
                  "increases by more than a thousand times in under a week."),
            ("p", "What the larva is fed decides whether a female becomes a queen or a "
                  "worker. Young larvae of both kinds first receive a rich secretion from "
                  "the glands in the heads of nurse bees. A larva destined to be a queen "
                  "keeps receiving large amounts of this royal jelly for her whole larval "
                  "life, in a large vertical cell that hangs from the comb like a peanut "
                  "shell. Worker larvae are switched after a few days to a diet that "
                  "includes more honey and pollen. The difference in diet alters which "
                  "genes are active, and the result is two very different adults that "
                  "share the same genetic inheritance."),
            ("p", "When the larva is fully grown, the workers seal its cell with a porous "
                  "wax capping, and the larva spins a cocoon and becomes a pupa. Inside "
                  "the capped cell its body is rebuilt into the adult form. The time from "
                  "egg to adult differs between the castes. A queen emerges after about "
                  "sixteen days, a worker after about twenty-one days and a drone after "
                  "about twenty-four days. Beekeepers use these figures constantly: for "
                  "example, if a colony loses its queen, the workers can raise a "
                  "replacement from a young worker larva, and the beekeeper can predict "
                  "when the new queen should appear."),
            ("p", "Brood is kept at a remarkably constant temperature of roughly thirty-"
                  "four to thirty-five degrees Celsius. Workers generate heat by "
                  "shivering their flight muscles and cool the nest by fanning and by "
                  "spreading droplets of water that evaporate. Brood reared at the wrong "
                  "temperature may develop into adults with poorer learning and memory."),
        ],
        [
            ("h", "Division of labour"),
            ("p", "A worker's tasks follow a rough timetable that depends on her age, a "
                  "pattern known as age polyethism. In her first days after emerging she "
                  "cleans and polishes cells so that the queen will lay in them. She then "
                  "becomes a nurse, feeding larvae with secretions from her hypopharyngeal "
                  "glands. In the second and third weeks of adult life, the wax glands on "
                  "the underside of her abdomen are at their most active, and she is "
                  "likely to build comb, receive nectar from foragers, store pollen and "
                  "remove debris and dead bees."),
            ("p", "Towards the end of her third week she may spend time as a guard at the "
                  "entrance, checking the odour of incoming bees and challenging robbers "
                  "and wasps. After that she becomes a forager, flying out to collect "
                  "nectar, pollen, water and propolis, often from plants more than a "
                  "kilometre away. Foraging is the most dangerous work in the colony, "
                  "and in summer a worker rarely lives more than five or six weeks in "
                  "total."),
            ("p", "The timetable is flexible rather than fixed. If many foragers are lost, "
                  "some younger bees start foraging early; if the nurses are removed, "
                  "older bees can regrow their brood food glands and return to nursing. "
                  "Workers that emerge in late summer and autumn develop differently. "
                  "These winter bees carry large reserves of protein and fat in their "
                  "bodies, rear little or no brood, and can survive for four to six months "
                  "while the colony clusters through the cold season."),
            ("p", "The queen's own future is decided by the workers. When her pheromone "
                  "output falls, when the colony becomes crowded, or when she dies, the "
                  "workers start rearing new queens. In this way a colony can replace its "
                  "mother, or divide itself by swarming, without any individual bee "
                  "understanding the whole process."),
        ],
    ],
)

VARROA = Booklet(
    filename="varroa-management.pdf",
    header="Apiary Notes - Bee Health Series, Leaflet 4",
    title="Integrated Management of the Varroa Mite",
    pages=[
        [
            ("h", "Integrated Management of the Varroa Mite"),
            ("p", "Of all the problems facing beekeepers in most of the world, the "
                  "parasitic mite Varroa destructor is the most important. The mite was "
                  "originally a parasite of the eastern honeybee, Apis cerana, which has "
                  "behaviours that keep mite numbers low. During the twentieth century it "
                  "moved onto the western honeybee, Apis mellifera, and spread across "
                  "almost every continent. Western honeybee colonies that are left "
                  "untreated in most regions usually die within two or three years of "
                  "becoming infested."),
            ("h", "How the mite lives"),
            ("p", "Adult female mites are reddish-brown, oval and about the size of a "
                  "pinhead. They ride on adult bees, tucked between the plates of the "
                  "abdomen, and feed on the bees' fat body tissue. Reproduction happens "
                  "only inside capped brood cells. A mated female slips into a cell "
                  "shortly before the workers seal it and lays her eggs on the developing "
                  "pupa. Her offspring feed on the pupa, the young mites mate inside the "
                  "cell, and the mated daughters leave with the emerging bee."),
            ("p", "Drone cells are capped for longer than worker cells, so more daughter "
                  "mites can mature in them, and mites show a strong preference for drone "
                  "brood. As a result the mite population grows fastest in late spring "
                  "and summer, when the colony is rearing both drones and workers, and "
                  "the number of mites can double in a few weeks."),
            ("p", "The damage is done less by the feeding itself than by the viruses the "
                  "mite transmits. Deformed wing virus is the best known: bees infected "
                  "as pupae may emerge with shrivelled, useless wings and short lives. "
                  "When mite and virus levels climb in late summer, the long-lived "
                  "winter bees are damaged just as they are being reared, and the colony "
                  "may collapse during the winter even though it looked strong in August."),
        ],
        [
            ("h", "Monitoring before treating"),
            ("p", "Integrated pest management starts with measurement. A beekeeper who "
                  "treats on a calendar without counting mites cannot tell whether a "
                  "treatment was needed or whether it worked. Several methods are in "
                  "common use, and each has strengths and weaknesses."),
            ("p", "The alcohol wash is the most accurate quick test. About three hundred "
                  "bees, roughly half a cup, are scooped from a brood comb, making sure "
                  "the queen is not among them, and shaken in a jar of alcohol or "
                  "soapy water that dislodges the mites. The mites are counted and "
                  "expressed as mites per hundred bees. The sugar roll uses the same "
                  "sample but coats the bees in icing sugar instead; the mites fall off "
                  "and the bees survive, at the cost of some accuracy."),
            ("p", "A sticky or oiled board beneath an open mesh floor collects mites that "
                  "fall naturally. Counting the daily natural drop over a week gives a "
                  "rough trend without opening the hive, but the relationship between "
                  "drop and the real population changes with the amount of brood."),
            ("p", "Thresholds for action vary with season and region, and local advice "
                  "should be followed. As a general guide, many extension services treat "
                  "a count of two or three mites per hundred bees in summer as a signal "
                  "to act, and a lower figure in spring, when the population has months "
                  "of growth ahead. Counting again a few weeks after a treatment shows "
                  "whether it actually worked."),
        ],
        [
            ("h", "Methods of control"),
            ("p", "Because mites breed in capped brood, some of the most effective controls "
                  "are simple changes in management. Drone brood removal exploits the "
                  "mites' preference for drone cells: the beekeeper gives the colony a "
                  "frame on which it will build drone comb, then removes and freezes the "
                  "frame once the cells are capped, taking many mites with it. Creating "
                  "a break in brood rearing, for example by caging the queen or by "
                  "splitting the colony, leaves all the mites on adult bees, where they "
                  "are exposed to treatment."),
            ("p", "Several treatments are based on substances that occur naturally. "
                  "Oxalic acid, applied by trickling a solution between the combs or by "
                  "vaporisation, is very effective when there is little or no capped "
                  "brood, which is why it is often used in early winter. Formic acid "
                  "vapour can reach mites under the cappings, but it is sensitive to "
                  "temperature and can harm queens if misused. Thymol, a compound from "
                  "thyme oil, works best in warm weather."),
            ("p", "Synthetic miticides such as amitraz can be highly effective, but mite "
                  "populations have developed resistance to several older products, "
                  "including fluvalinate and coumaphos, after years of repeated use. "
                  "Rotating between treatments with different modes of action slows the "
                  "development of resistance. Whatever the product, the label is the law "
                  "in many countries: the dose, timing and withdrawal period protect both "
                  "the bees and the honey."),
            ("p", "Breeding offers a long-term path. Some colonies show Varroa-sensitive "
                  "hygiene, in which workers detect infested pupae, uncap the cells and "
                  "remove them, interrupting the mites' reproduction. Queens from such "
                  "stock, combined with regular monitoring and well-timed treatments, "
                  "give the best chance of bringing colonies through the winter in good "
                  "health."),
        ],
    ],
)

BOOKLETS = (COLONY, VARROA)


class _Leaflet(FPDF):
    def __init__(self, booklet: Booklet) -> None:
        super().__init__(format="A4", unit="mm")
        self.booklet = booklet
        self.alias_nb_pages()

    def header(self) -> None:
        self.set_font("Helvetica", "I", 9)
        self.set_text_color(90, 90, 90)
        self.cell(0, 8, self.booklet.header, align="C", new_x="LMARGIN", new_y="NEXT")
        self.set_draw_color(180, 180, 180)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(6)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", "", 9)
        self.set_text_color(90, 90, 90)
        self.cell(0, 10, f"Page {self.page_no()} of {{nb}}", align="C")


def _hyphenable(text: str) -> str:
    return re.sub(r"[A-Za-z]+", lambda m: HYPHENATION.get(m.group(), m.group()), text)


def build(booklet: Booklet) -> bytes:
    pdf = _Leaflet(booklet)
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_producer("Syllabus tools/make_examples.py")
    pdf.set_title(booklet.title)
    pdf.set_author("Syllabus example documents (CC0-1.0)")
    pdf.set_lang("en")
    pdf.set_margins(left=22, top=18, right=22)
    pdf.set_auto_page_break(auto=True, margin=22)
    # A fixed file id (fpdf2 otherwise derives one from the output and the date).
    digest = hashlib.md5(booklet.filename.encode()).hexdigest().upper()
    pdf.file_id = lambda: f"<{digest}><{digest}>"
    for blocks in booklet.pages:
        pdf.add_page()
        start = pdf.page_no()
        for kind, text in blocks:
            if kind == "h":
                pdf.set_font("Helvetica", "B", 15 if start == 1 and text == booklet.title else 12)
                pdf.multi_cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2)
            else:
                pdf.set_font("Helvetica", "", 11)
                pdf.multi_cell(0, 5.6, _hyphenable(text), new_x="LMARGIN", new_y="NEXT")
                pdf.ln(3)
        if pdf.page_no() != start:
            raise SystemExit(f"{booklet.filename}: page {start} overflowed; shorten its text")
    return bytes(pdf.output())


def _has_line_end_hyphen(data: bytes) -> bool:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(data))
    return any(re.search(r"[a-z]-\n[a-z]", page.extract_text()) for page in reader.pages)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES, help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for booklet in BOOKLETS:
        data = build(booklet)
        if not _has_line_end_hyphen(data):
            raise SystemExit(f"{booklet.filename}: no word is hyphenated at a line end; "
                             "add entries to HYPHENATION")
        (args.out / booklet.filename).write_bytes(data)
        print(f"wrote {args.out / booklet.filename} ({len(booklet.pages)} pages, {len(data)} bytes)")


if __name__ == "__main__":
    main()
