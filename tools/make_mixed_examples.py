"""Write ``examples/mixed/``: Word, PowerPoint, a scanned PDF and Markdown, in English and
German, for trying the Office parsers, OCR and language handling
(``syllabus run examples/bees examples/mixed``).

    python tools/make_mixed_examples.py

The prose is original writing for Syllabus, CC0-1.0 like the rest of ``examples/``. Word
and PowerPoint files are written with python-docx and python-pptx; the scanned PDF is a
picture of a printed page (Pillow's bundled TrueType font at 200 dpi) in a PDF written by
fpdf2, with no text layer, so only OCR reads it.
"""

from __future__ import annotations

import io
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "examples" / "mixed"
_DATE = datetime(2026, 12, 1, tzinfo=UTC)

WINTER_CHECKLIST = {
    "title": "Winter checklist for the apiary",
    "sections": [
        ("Before the first frost", [
            "Every colony should go into winter with a young, laying queen and about "
            "twenty kilograms of stored honey. Heft each hive from behind: a hive that "
            "lifts easily needs feeding with thick sugar syrup while the days are still "
            "warm enough for the bees to store it.",
            "Fit mouse guards to the entrances in October, because mice look for warm and "
            "dry places to nest and will chew through comb.",
        ]),
        ("Through the winter", [
            "Do not open the hives. A cluster that is broken up on a cold day cannot "
            "reform quickly, and the bees on its edge chill and die.",
            "After a heavy snowfall, clear the entrances so that the colony can ventilate "
            "and the bees can make cleansing flights on mild days.",
        ]),
    ],
    "list": ["Check the hive straps after every storm.",
             "Heft the hives once a month from January.",
             "Order foundation and frames for the spring."],
    "table": [("Month", "Task"), ("October", "Fit mouse guards"),
              ("January", "Heft the hives"), ("March", "First quick inspection")],
}

BIENEN = {
    "title": "Bienen im Winter",
    "sections": [
        ("Die Wintertraube", [
            "Im Winter bilden die Arbeiterinnen eine dichte Traube, in deren Mitte die "
            "Königin sitzt. Die Bienen im Inneren zittern mit ihren Flugmuskeln und "
            "erzeugen so Wärme, während die äußere Schicht wie eine Decke isoliert.",
            "Die Traube wandert im Lauf des Winters langsam über die Waben und zehrt dabei "
            "von den eingelagerten Vorräten.",
        ]),
        ("Futter und Pflege", [
            "Ein starkes Volk braucht etwa zwanzig Kilogramm Honig, um bis zum Frühjahr zu "
            "kommen. Völker mit zu wenig Vorrat werden im Spätsommer mit dickem "
            "Zuckersirup gefüttert.",
            "Im Herbst setzt der Imker Mäusegitter vor die Fluglöcher, weil Mäuse warme "
            "Nistplätze suchen und die Waben zerstören.",
        ]),
    ],
    "list": ["Beuten nach jedem Sturm kontrollieren.",
             "Fluglöcher nach starkem Schneefall freimachen.",
             "Im Winter die Völker nicht öffnen."],
    "table": [("Monat", "Arbeit"), ("Oktober", "Mäusegitter anbringen"),
              ("Januar", "Beuten wiegen"), ("März", "Erste kurze Durchsicht")],
}

SLIDES = [
    ("Schwarmkontrolle im Frühjahr",
     ["Ein Volk bereitet das Schwärmen vor, indem es in Weiselzellen neue Königinnen "
      "aufzieht.",
      "Die alte Königin verlässt den Stock mit etwa der Hälfte der Arbeiterinnen, kurz "
      "bevor die erste junge Königin schlüpft."],
     "Zeigen Sie hier ein Foto einer verdeckelten Weiselzelle am unteren Wabenrand."),
    ("Durchsicht alle sieben bis neun Tage",
     ["Von April bis Juni wird jedes Volk alle sieben bis neun Tage durchgesehen.",
      "Wer Weiselzellen früh findet, kann einen Ableger bilden, bevor der Schwarm "
      "abgeht."],
     "Die Frist ergibt sich aus der Entwicklungszeit der Königin: acht Tage nach der "
     "Verdeckelung schlüpft sie."),
]

SCAN = ("Inspection record, hive 7\n\n"
        "The colony covered nine frames and was calm on the comb. The queen was seen on "
        "the fourth frame, and there were eggs and young larvae in a compact pattern.\n\n"
        "Two play cups were found along the bottom bars, both empty. The colony has "
        "enough room for now, but a super should be added before the next nectar flow. "
        "The varroa count on the sticky board was three mites a day, below the treatment "
        "threshold.")

HONIGERNTE = """# Die Honigernte

Honig wird geerntet, wenn mindestens zwei Drittel der Zellen einer Wabe verdeckelt sind.
Dann enthält er weniger als achtzehn Prozent Wasser und gärt nicht.

## Entdeckeln und Schleudern

Die Wachsdeckel werden mit einer Entdeckelungsgabel abgehoben. Danach kommen die Waben in
die Schleuder, die den Honig durch die Fliehkraft aus den Zellen treibt.

## Sieben und Abfüllen

Der geschleuderte Honig läuft durch ein feines Sieb und ruht einige Tage, damit Luftblasen
und Wachsreste nach oben steigen. Erst dann wird er in saubere Gläser abgefüllt.
"""


def _docx(spec: dict) -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.created = _DATE
    document.core_properties.modified = _DATE
    document.add_heading(spec["title"], level=0)
    for heading, paragraphs in spec["sections"]:
        document.add_heading(heading, level=1)
        for text in paragraphs:
            document.add_paragraph(text)
    for item in spec["list"]:
        document.add_paragraph(item, style="List Number")
    rows = spec["table"]
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _pptx() -> bytes:
    import pptx

    deck = pptx.Presentation()
    deck.core_properties.created = _DATE
    deck.core_properties.modified = _DATE
    for title, bullets, notes in SLIDES:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        frame = slide.placeholders[1].text_frame
        frame.text = bullets[0]
        for bullet in bullets[1:]:
            frame.add_paragraph().text = bullet
        slide.notes_slide.notes_text_frame.text = notes
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def _scan(text: str, dpi: int = 200, font_size: int = 30) -> bytes:
    from fpdf import FPDF
    from PIL import Image, ImageDraw, ImageFont

    width, height = round(8.27 * dpi), round(11.69 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    margin, y = round(0.8 * dpi), round(0.8 * dpi)
    for paragraph in text.split("\n\n"):
        for line in textwrap.wrap(paragraph, int((width - 2 * margin) / (0.5 * font_size))):
            draw.text((margin, y), line, fill=0, font=font)
            y += round(font_size * 1.6)
        y += font_size
    png = io.BytesIO()
    image.save(png, "PNG")
    pdf = FPDF(format="A4")
    pdf.set_creation_date(_DATE)
    pdf.add_page()
    pdf.image(io.BytesIO(png.getvalue()), x=0, y=0, w=210, h=297)
    return bytes(pdf.output())


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    files = {
        "winter-checklist.docx": _docx(WINTER_CHECKLIST),
        "bienen-im-winter.docx": _docx(BIENEN),
        "schwarmkontrolle.pptx": _pptx(),
        "inspection-record-scan.pdf": _scan(SCAN),
        "honigernte.md": HONIGERNTE.encode(),
    }
    for name, data in files.items():
        (OUT / name).write_bytes(data)
        print(f"wrote {OUT / name} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
