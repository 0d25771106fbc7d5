"""HTML main content: navigation and other boilerplate removed, structure and code kept.

The fixtures in tests/fixtures/html are a Sphinx page (the layout of Python's docs), a
WordPress-like blog post and a news article, each with the usual boilerplate around one
element marked `data-truth="main"` (which no extractor looks at).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragkit.chunkers import make_chunker
from ragkit.config import LoaderConfig, MarkdownChunkerConfig
from ragkit.loaders.html import code_language, load

FIXTURES = Path(__file__).parent / "fixtures" / "html"

BOILERPLATE = {
    "sphinx": ["Previous topic", "Next topic", "This Page", "Show Source", "Report a Bug", "Quick search",
               "Table of Contents", "Navigation", "modules", "Created using", "¶"],
    "blog": ["We use cookies", "Accept all", "Recent posts", "Categories", "Leave a reply", "Share this",
             "Proudly powered", "Previous post", "Great post", "About me", "Subscribe"],
    "news": ["Subscribe for", "Most read", "Related stories", "Get the morning briefing", "Advertisement",
             "Cookie settings", "Log in", "Storm warning"],
}
CONTENT = {
    "sphinx": ["Return the number of units of sku in stock.", '>>> count("A-1001")', "| min | order when"],
    "blog": ["Discard all but 50 grams", "| Country loaf | 500 | 350 | 70% |", "def scale(recipe, factor):"],
    "news": ["voted 31 to 14", "said Anna Berg", "expected in the autumn"],
}


@pytest.mark.parametrize("page", sorted(BOILERPLATE))
def test_main_content_drops_boilerplate_and_keeps_the_article(page: str) -> None:
    (document,) = load(FIXTURES / f"{page}.html", LoaderConfig())
    assert document.metadata["main_content"] == "trafilatura"
    for phrase in BOILERPLATE[page]:
        assert phrase not in document.text, f"{page}: boilerplate {phrase!r} kept"
    for phrase in CONTENT[page]:
        assert phrase in document.text, f"{page}: content {phrase!r} lost"


def test_main_content_off_keeps_every_visible_word() -> None:
    config = LoaderConfig.model_validate({"html": {"main_content": False}})
    (document,) = load(FIXTURES / "sphinx.html", config)
    assert "main_content" not in document.metadata
    assert "Previous topic" in document.text and "Show Source" in document.text


def test_headings_code_blocks_and_offsets_point_into_the_text() -> None:
    (document,) = load(FIXTURES / "sphinx.html", LoaderConfig())
    text = document.text
    headings = document.metadata["headings"]
    assert [(h["level"], h["text"]) for h in headings] == [
        (1, "shelfkit.inventory — Track stock levels"), (2, "Counting items"), (2, "Reorder rules"),
    ]
    for heading in headings:  # no "¶" permalink, and the offset is exact
        assert text[heading["start"] : heading["start"] + len(heading["text"])] == heading["text"]
    (block,) = document.metadata["code_blocks"]
    assert block["language"] == "python"  # from Sphinx's highlight-python3 wrapper, not the extractor
    assert text[block["start"] : block["end"]] == '>>> count("A-1001")\n42\n>>> count("A-1001", location="north")\n17'

    (blog,) = load(FIXTURES / "blog.html", LoaderConfig())
    (code,) = blog.metadata["code_blocks"]
    snippet = blog.text[code["start"] : code["end"]]
    assert code["language"] == "python" and snippet.startswith("def scale(recipe, factor):")
    assert '\n\n    return {name: grams' in snippet  # whitespace and the blank line inside are kept


def test_html_chunks_carry_the_section_path_and_whole_code_blocks(tmp_path: Path) -> None:
    (document,) = load(FIXTURES / "sphinx.html", LoaderConfig())
    chunker = make_chunker(MarkdownChunkerConfig(chunk_size=40, chunk_overlap=5))
    chunks = chunker.chunk(document)
    code = next(c for c in chunks if ">>> count" in c.text)
    assert code.metadata["headings"] == ["shelfkit.inventory — Track stock levels", "Counting items"]
    assert code.metadata["code_language"] == "python"
    assert '>>> count("A-1001")\n42\n>>> count("A-1001", location="north")\n17' in code.text
    rules = next(c for c in chunks if "reorder rule names" in c.text)
    assert rules.metadata["headings"][-1] == "Reorder rules"
    for chunk in chunks:
        assert document.text[chunk.start : chunk.end] == chunk.text


@pytest.mark.parametrize(
    ("classes", "language"),
    [("highlight-python3 notranslate", "python"), ("language-rust", "rust"), ("lang-js", "js"),
     ("highlight-default notranslate", None), ("sourceCode", None), ("", None)],
)
def test_code_language_from_class_names(classes: str, language: str | None) -> None:
    assert code_language(classes) == language


def test_unparseable_or_tiny_pages_keep_their_text(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.html"
    tiny.write_text("<html><body><p>Just one short line.</p></body></html>", encoding="utf-8")
    (document,) = load(tiny, LoaderConfig())
    assert document.text == "Just one short line."  # nothing to remove, nothing lost
    copy = tmp_path / "copy.html"
    shutil.copy(FIXTURES / "news.html", copy)
    (news,) = load(copy, LoaderConfig())
    assert news.metadata["title"].startswith("City council approves")


def test_markdown_fenced_code_stays_whole_with_its_language() -> None:
    from ragkit.schema import Document

    code = "```python\ndef area(r):\n\n    return 3.14159 * r * r\n\n\nprint(area(2))\n```"
    prose = " ".join(f"Sentence number {i} talks about circles." for i in range(12))
    text = f"# Circles\n\n{prose}\n\n{code}\n\n{prose}\n"
    document = Document(id="c.md", source="c.md", text=text, metadata={"file_type": "markdown"})
    chunks = make_chunker(MarkdownChunkerConfig(chunk_size=40, chunk_overlap=8)).chunk(document)
    holding = [c for c in chunks if "def area" in c.text or "print(area" in c.text]
    assert len(holding) == 1 and code in holding[0].text  # never cut at its blank lines
    assert holding[0].metadata["code_language"] == "python"
    assert all(not c.text.startswith(("return", "print(")) for c in chunks)  # no overlap into it
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert len(chunk.text.split()) <= 60
