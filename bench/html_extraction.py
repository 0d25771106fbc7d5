#!/usr/bin/env python3
"""Main-content extraction for HTML: readability-lxml vs trafilatura vs the whole page.

    python bench/html_extraction.py [--docs /usr/share/doc/python3/html] [--pages 120] [--json OUT]

Needs `pip install readability-lxml` (not a ragkit dependency) and, for the docs site, Debian's
`python3-doc` (`apt-get install python3-doc`). Every extractor's HTML is rendered to text by the
same renderer (ragkit/loaders/html.py), then compared with the truth:

- Docs site: a seeded sample of Sphinx pages; truth = the `div[role=main]` body Sphinx renders
  the page's source into (navigation, sidebars, breadcrumbs and footers are outside it).
- Fixtures (tests/fixtures/html/*.html: blog, news, Sphinx-like): truth = the element marked
  `data-truth="main"` (an attribute no extractor looks at).

Reported per extractor: word precision / recall / F1 against the truth (bags of lowercased words),
the share of pages leaking navigation phrases ("Previous topic", "Show Source", "Recent posts",
"cookies", ...), code blocks kept whole (`<pre>` text found verbatim) and with their language.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ragkit.loaders.html import main_content, render  # noqa: E402

NAV_PHRASES = (
    "previous topic", "next topic", "this page", "show source", "report a bug", "quick search",
    "table of contents", "navigation", "recent posts", "categories", "we use cookies", "accept all",
    "related stories", "most read", "leave a reply", "all rights reserved", "subscribe", "share this",
)
_WORD = re.compile(r"\w+")


def words(text: str) -> Counter[str]:
    return Counter(w.lower() for w in _WORD.findall(text))


def prf(found: Counter[str], truth: Counter[str]) -> tuple[float, float, float]:
    overlap = sum((found & truth).values())
    p = overlap / max(1, sum(found.values()))
    r = overlap / max(1, sum(truth.values()))
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def truth_html(html: str, fixture: bool) -> str | None:
    import lxml.html

    tree = lxml.html.fromstring(html)
    found = tree.xpath('//*[@data-truth="main"]' if fixture else '//div[@role="main"]')
    return lxml.html.tostring(found[0], encoding="unicode") if found else None


def readability_html(html: str) -> str | None:
    from readability import Document

    return str(Document(html).summary(html_partial=True))


def trafilatura_html(html: str) -> str | None:
    import trafilatura

    return trafilatura.extract(
        html, output_format="html", include_formatting=True, include_tables=True, include_comments=False,
        include_links=False, favor_recall=True,
    )


def rendered(extract_html):  # type: ignore[no-untyped-def]
    def extractor(html: str) -> tuple[str, list[dict]]:
        extracted = extract_html(html)
        text, _, _, code = render(extracted) if extracted else ("", None, [], [])
        return text, code

    return extractor


def ragkit_loader(html: str) -> tuple[str, list[dict]]:
    found = main_content(html)
    return (found[0], found[2]) if found else ("", [])


EXTRACTORS = {
    "whole page": rendered(lambda html: html),
    "readability-lxml": rendered(readability_html),
    "trafilatura": rendered(trafilatura_html),
    "ragkit loader (trafilatura + code languages)": ragkit_loader,
}


def score_page(html: str, fixture: bool) -> dict[str, dict[str, float]] | None:
    truth = truth_html(html, fixture)
    if truth is None:
        return None
    truth_text, _, _, truth_code = render(truth)
    truth_words = words(truth_text)
    result = {}
    for name, extractor in EXTRACTORS.items():
        started = time.perf_counter()
        text, code = extractor(html)
        ms = (time.perf_counter() - started) * 1000
        p, r, f = prf(words(text), truth_words)
        lowered = " ".join(text.lower().split())
        truth_lowered = " ".join(truth_text.lower().split())
        leaks = [phrase for phrase in NAV_PHRASES if phrase in lowered and phrase not in truth_lowered]
        blocks = [truth_text[c["start"] : c["end"]] for c in truth_code]
        kept = sum(block in text for block in blocks)
        languages = {truth_text[c["start"] : c["end"]]: c["language"] for c in truth_code if c["language"]}
        found_languages = {text[c["start"] : c["end"]]: c["language"] for c in code}
        same_language = sum(found_languages.get(block) == language for block, language in languages.items())
        result[name] = {
            "precision": p, "recall": r, "f1": f, "leaks": float(bool(leaks)), "ms": ms,
            "code_blocks": float(len(blocks)), "code_kept": float(kept),
            "code_languages": float(len(languages)), "code_language_kept": float(same_language),
        }
    return result


def summarise(rows: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    summary = {}
    for name in EXTRACTORS:
        per = [row[name] for row in rows]
        blocks = sum(r["code_blocks"] for r in per)
        languages = sum(r["code_languages"] for r in per)
        summary[name] = {
            "pages": len(per),
            "precision": statistics.fmean(r["precision"] for r in per),
            "recall": statistics.fmean(r["recall"] for r in per),
            "f1": statistics.fmean(r["f1"] for r in per),
            "pages_leaking_nav": statistics.fmean(r["leaks"] for r in per),
            "code_blocks_kept": sum(r["code_kept"] for r in per) / blocks if blocks else None,
            "code_language_kept": sum(r["code_language_kept"] for r in per) / languages if languages else None,
            "ms_p50": statistics.median(r["ms"] for r in per),
        }
    return summary


def print_table(title: str, summary: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print("| extractor | pages | precision | recall | F1 | pages leaking nav | code blocks kept | code language kept | ms/page p50 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in summary.items():
        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"
        print(
            f"| {name} | {s['pages']} | {fmt(s['precision'])} | {fmt(s['recall'])} | {fmt(s['f1'])} | "
            f"{fmt(s['pages_leaking_nav'])} | {fmt(s['code_blocks_kept'])} | {fmt(s['code_language_kept'])} | {s['ms_p50']:.1f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, default=Path("/usr/share/doc/python3/html"))
    parser.add_argument("--pages", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "html_extraction.json")
    args = parser.parse_args()
    results: dict[str, object] = {}

    fixtures = sorted((REPO / "tests" / "fixtures" / "html").glob("*.html"))
    rows = [score_page(p.read_text(encoding="utf-8"), fixture=True) for p in fixtures]
    results["fixtures"] = summarise([r for r in rows if r])
    print_table(f"Fixtures ({', '.join(p.stem for p in fixtures)})", results["fixtures"])  # type: ignore[arg-type]

    if args.docs.is_dir():
        pages = sorted(p for p in args.docs.rglob("*.html") if "_static" not in p.parts)
        sample = random.Random(args.seed).sample(pages, min(args.pages, len(pages)))
        rows = [score_page(p.read_text(encoding="utf-8", errors="replace"), fixture=False) for p in sample]
        kept = [r for r in rows if r]
        results["docs"] = summarise(kept)
        print_table(f"Docs site {args.docs} ({len(kept)} of {len(pages)} pages, seed {args.seed})", results["docs"])  # type: ignore[arg-type]
    else:
        print(f"\n(no docs site at {args.docs}: apt-get install python3-doc)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nsaved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
