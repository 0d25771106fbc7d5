#!/usr/bin/env python3
"""Generate the PDF documents of the ragkit sample corpus.

Writes:
  data/missions/voyager_program.pdf  (3 pages, different facts on each page)
  data/missions/new_horizons.pdf     (1 page)

The text lives in this script (the PDFs are build artefacts, but they are kept
in the repository so that the corpus works without running this script).
The core PDF fonts only cover latin-1, so all text here is plain ASCII.

Usage (from the repository root):
    python scripts/make_sample_pdf.py            # write into data/missions/
    python scripts/make_sample_pdf.py --out DIR  # write somewhere else

The output is deterministic: the creation date is fixed, so re-running the
script produces the same text and page layout.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from fpdf import FPDF

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data" / "missions"
FIXED_DATE = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc)

# Each document is a list of pages; each page is a list of blocks.
# A block is ("title" | "h2" | "p", text). Every page starts on a new PDF page
# so that page-number citations can be checked against these lists.

VOYAGER_PAGES: list[list[tuple[str, str]]] = [
    # ---------------------------------------------------------------- page 1
    [
        ("title", "The Voyager Program"),
        (
            "p",
            "Voyager 1 and Voyager 2 are twin robotic spacecraft built and "
            "operated for NASA by the Jet Propulsion Laboratory (JPL). Both "
            "were launched from Cape Canaveral, Florida, on Titan IIIE-Centaur "
            "rockets, and both are still working decades later as the most "
            "distant human-made objects. Page 1 covers Voyager 1, page 2 "
            "Voyager 2, and page 3 interstellar space and the Golden Record.",
        ),
        ("h2", "Voyager 1"),
        (
            "p",
            "Voyager 1 was launched on 5 September 1977. Although it left "
            "Earth 16 days after its twin, it was sent on a faster, shorter "
            "trajectory and reached Jupiter first, making its closest "
            "approach on 5 March 1979.",
        ),
        (
            "p",
            "Voyager 1 made its closest approach to Saturn on 12 November "
            "1980. Mission planners sent it close to Saturn's largest moon, "
            "Titan, to study its thick, hazy atmosphere. That flyby bent "
            "Voyager 1's path up and out of the plane in which the planets "
            "orbit, so it could not visit any more planets.",
        ),
        ("h2", "The Pale Blue Dot"),
        (
            "p",
            "On 14 February 1990, at the suggestion of the astronomer Carl "
            "Sagan, Voyager 1 turned its camera back and photographed the "
            "planets in a Family Portrait of the Solar System. In one frame, "
            "taken from about 6 billion kilometres away, Earth is a speck "
            "smaller than a single pixel: the Pale Blue Dot. The cameras were "
            "then switched off to save power.",
        ),
        (
            "p",
            "On 17 February 1998 Voyager 1 overtook Pioneer 10 to become the "
            "most distant human-made object, a title it still holds.",
        ),
    ],
    # ---------------------------------------------------------------- page 2
    [
        ("h2", "Voyager 2 and the Grand Tour"),
        (
            "p",
            "Despite its name, Voyager 2 was the first of the pair to leave "
            "Earth: it was launched on 20 August 1977, on a slower path that "
            "let it continue from Saturn to the outermost planets.",
        ),
        (
            "p",
            "The route relied on a rare arrangement of the outer planets that "
            "occurs only about once every 175 years. It let a single "
            "spacecraft use the gravity of each planet in turn to bend its "
            "path and gain speed towards the next, a sequence called the "
            "Grand Tour. Without these gravity assists the trip to Neptune "
            "would have taken about 30 years instead of 12.",
        ),
        ("h2", "Four giant planets"),
        (
            "p",
            "Jupiter: closest approach on 9 July 1979, four months after "
            "Voyager 1.",
        ),
        ("p", "Saturn: Voyager 2 passed Saturn in August 1981."),
        (
            "p",
            "Uranus: closest approach on 24 January 1986, still the only visit "
            "by any spacecraft to the planet.",
        ),
        (
            "p",
            "Neptune: on 25 August 1989 Voyager 2 skimmed about 4,950 km "
            "above Neptune's north pole, its closest pass of any planet "
            "during the mission. A few hours later it flew past Neptune's "
            "large moon Triton.",
        ),
        (
            "p",
            "Voyager 2 remains the only spacecraft to have visited all four "
            "giant planets, and the only one to have visited Uranus and "
            "Neptune at all.",
        ),
    ],
    # ---------------------------------------------------------------- page 3
    [
        ("h2", "Into interstellar space"),
        (
            "p",
            "After the planetary encounters the mission became the Voyager "
            "Interstellar Mission, aiming for the heliopause, the boundary "
            "where the solar wind gives way to the gas between the stars.",
        ),
        (
            "p",
            "Voyager 1 crossed the heliopause on 25 August 2012, becoming the "
            "first human-made object in interstellar space. Voyager 2, moving "
            "more slowly in a different direction, followed on 5 November "
            "2018; its still-working plasma instrument confirmed the crossing "
            "with direct measurements.",
        ),
        ("h2", "Power"),
        (
            "p",
            "Sunlight is far too weak out there for solar panels, so each "
            "Voyager is powered by three radioisotope thermoelectric "
            "generators (RTGs) fuelled by plutonium-238. Their output falls by "
            "about 4 watts every year, so engineers switch off heaters and "
            "instruments one by one to keep the spacecraft alive.",
        ),
        ("h2", "The Golden Record"),
        (
            "p",
            "Each Voyager carries a 12-inch gold-plated copper phonograph "
            "record as a message for anyone who might find it. Its contents "
            "were chosen by a committee chaired by Carl Sagan. The record "
            "holds 115 images, spoken greetings in 55 languages, natural "
            "sounds of Earth such as wind, thunder and birdsong, and 90 "
            "minutes of music ranging from Bach to Chuck Berry. Its cover "
            "shows how to play it and a map locating the Sun by 14 pulsars.",
        ),
    ],
]

NEW_HORIZONS_PAGES: list[list[tuple[str, str]]] = [
    [
        ("title", "New Horizons: The First Mission to Pluto"),
        (
            "p",
            "New Horizons is a NASA spacecraft built to make the first close "
            "study of Pluto and its moons and then explore farther into the "
            "Kuiper Belt. It was the first mission of NASA's New Frontiers "
            "program. The principal investigator is Alan Stern of the "
            "Southwest Research Institute, and the spacecraft was built and is "
            "operated by the Johns Hopkins University Applied Physics "
            "Laboratory. A single radioisotope thermoelectric generator "
            "supplies its power.",
        ),
        ("h2", "The fastest launch"),
        (
            "p",
            "New Horizons was launched on 19 January 2006 on an Atlas V "
            "rocket from Cape Canaveral, Florida. It left Earth at about "
            "16 kilometres per second, the highest launch speed of any "
            "spacecraft, and crossed the orbit of the Moon in about nine "
            "hours. A gravity assist from Jupiter on 28 February 2007 "
            "shortened the trip to Pluto by about three years. For much of "
            "the long cruise the spacecraft was put into hibernation to save "
            "wear on its systems.",
        ),
        ("h2", "The Pluto flyby"),
        (
            "p",
            "New Horizons made its closest approach to Pluto on 14 July 2015, "
            "passing about 12,500 km above the surface at a speed of about "
            "14 kilometres per second. Because its radio signal is weak and "
            "Pluto is so far away, it took more than a year to send all of "
            "the flyby data back to Earth.",
        ),
        (
            "p",
            "The spacecraft carries a small portion of the ashes of Clyde "
            "Tombaugh, the astronomer who discovered Pluto. One of its "
            "instruments, a dust counter built by students at the University "
            "of Colorado, is named after Venetia Burney, the girl who "
            "suggested the name Pluto.",
        ),
        ("h2", "Arrokoth"),
        (
            "p",
            "After Pluto, New Horizons was redirected to a small Kuiper Belt "
            "object and flew past it on 1 January 2019. It is the most distant "
            "object ever explored up close. The object, about 36 km long, "
            "turned out to be a contact binary: two flattened lobes gently "
            "joined together. It was named Arrokoth, a word meaning sky in "
            "the Powhatan and Algonquian language.",
        ),
    ],
]


class CorpusPDF(FPDF):
    """FPDF with a running header and a page-number footer."""

    def __init__(self, running_title: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.running_title = running_title
        self.set_margins(left=20, top=20, right=20)
        self.set_auto_page_break(auto=True, margin=20)

    def header(self) -> None:
        self.set_font("Helvetica", style="I", size=8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 6, self.running_title, align="R")
        self.ln(10)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", style="I", size=8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 6, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def build_pdf(
    pages: list[list[tuple[str, str]]], path: Path, title: str, subject: str
) -> None:
    pdf = CorpusPDF(running_title=f"{title} - ragkit sample corpus (CC BY 4.0)")
    pdf.set_title(title)
    pdf.set_author("ragkit sample corpus")
    pdf.set_subject(subject)
    pdf.set_creator("scripts/make_sample_pdf.py (fpdf2)")
    pdf.set_creation_date(FIXED_DATE)
    pdf.alias_nb_pages()

    for page in pages:
        pdf.add_page()
        for kind, text in page:
            text.encode("latin-1")  # core fonts are latin-1 only
            if kind == "title":
                pdf.set_font("Helvetica", style="B", size=18)
                pdf.multi_cell(0, 9, text)
                pdf.ln(4)
            elif kind == "h2":
                pdf.set_font("Helvetica", style="B", size=13)
                pdf.multi_cell(0, 7, text)
                pdf.ln(1)
            elif kind == "p":
                pdf.set_font("Helvetica", size=11)
                pdf.multi_cell(0, 5.5, text)
                pdf.ln(3)
            else:  # pragma: no cover - programming error
                raise ValueError(f"unknown block kind {kind!r}")

    if pdf.pages_count != len(pages):
        raise RuntimeError(
            f"{path.name}: expected {len(pages)} pages, got {pdf.pages_count}; "
            "some page text overflowed"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    print(f"wrote {path} ({pdf.pages_count} page(s))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output directory"
    )
    args = parser.parse_args()
    build_pdf(
        VOYAGER_PAGES,
        args.out / "voyager_program.pdf",
        title="The Voyager Program",
        subject="Voyager 1, Voyager 2, interstellar space and the Golden Record",
    )
    build_pdf(
        NEW_HORIZONS_PAGES,
        args.out / "new_horizons.pdf",
        title="New Horizons",
        subject="NASA's New Horizons mission to Pluto and Arrokoth",
    )


if __name__ == "__main__":
    main()
