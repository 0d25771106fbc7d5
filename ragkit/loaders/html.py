"""HTML (.html, .htm): the page's main content as structured text.

Two steps:

1. **Main content** (`loader.html.main_content: true`, the default): trafilatura picks the page's
   main content and drops navigation, headers, footers, sidebars, cookie banners, comment
   sections and the like, keeping headings, lists, tables and code blocks. Chosen over
   readability-lxml (a port of Mozilla's Readability) by `bench/html_extraction.py`
   (docs/benchmarks.md): on 120 pages of Debian's Python 3.11 docs, word F1 against Sphinx's own
   main `div` 0.93 vs 0.76 (readability keeps one section of many-section pages: recall 0.70 vs
   0.92), both equally clean on the blog/news/Sphinx fixtures of tests/fixtures/html. trafilatura
   drops class attributes, so code blocks get their language back from the original page. A page
   where it finds next to nothing, or that libxml2 cannot parse, keeps its whole visible text,
   and says so in `metadata["main_content"]`.
2. **Rendering** with the stdlib `html.parser` (iterative: deeply nested markup cannot hit the
   recursion limit): block elements become paragraphs, list items `- item` lines, table rows
   `| cell | cell |` lines, `<pre>` blocks keep their exact whitespace. Headings (without Sphinx's
   `¶` permalinks) and code blocks (with their language) are recorded with character offsets
   into the output text, so chunkers can keep section paths and whole code blocks.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.loaders.base import LoaderError, decode_text, make_document, read_bytes
from ragkit.schema import Document, LoadFailure

if TYPE_CHECKING:
    from ragkit.config import LoaderConfig

FILE_TYPE = "html"

# Content of these is never shown to a reader.
_HIDDEN = frozenset({"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object"})
_BLOCK = frozenset(
    """address article aside blockquote body br caption dd details dialog div dl dt fieldset
    figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li main menu
    nav ol option p pre section summary table tbody tfoot thead tr ul""".split()
)
_HEAD_CONTENT = frozenset({"title", "meta", "link", "base", "style", "script", "noscript", "template"})
_CELLS = frozenset({"td", "th"})
_LISTS = frozenset({"ul", "ol", "menu"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_SPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# Code languages from class names: `language-python` (HTML5 spec, Prism, highlight.js, markdown
# renderers), `lang-js`, `highlight-python3` (Sphinx), `sourceCode python` (pandoc).
_LANGUAGE_CLASS = re.compile(r"^(?:language|lang|highlight|brush:?)-?([A-Za-z0-9_+#.-]+)$")
_NOT_A_LANGUAGE = frozenset({"default", "none", "text", "plain", "plaintext", "notranslate", "nohighlight", "source"})
# Below this many words of main content the extractor is taken to have missed (link indexes,
# tables of contents); the whole visible text is kept instead.
MIN_MAIN_WORDS = 25
KEEP_WHOLE_PAGE = 0.9  # main content with more of the page's words, but fewer headings: keep the page


def code_language(classes: str) -> str | None:
    """The language named by an element's class attribute, e.g. "highlight-python3" -> "python"."""
    for name in classes.split():
        match = _LANGUAGE_CLASS.match(name)
        if match:
            language = match.group(1).lower()
            language = re.sub(r"(?<=[a-z])\d+$", "", language)  # python3 -> python
            if language not in _NOT_A_LANGUAGE:
                return language
    return None


class _Renderer(HTMLParser):
    """Visible text as paragraphs, with headings and code blocks recorded by character offset."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.length = 0  # length of "\n\n".join(paragraphs), kept incrementally
        self.headings: list[dict[str, Any]] = []
        self.code_blocks: list[dict[str, Any]] = []
        self.title: str | None = None
        self._buffer: list[str] = []
        self._hidden: list[str] = []  # open hidden elements, innermost last
        self._skip_depth = 0  # inside an element whose text is not content (permalinks)
        self._open: list[tuple[str, str]] = []  # (tag, class) of open elements, for code languages
        self._pre = 0
        self._pre_language: str | None = None
        self._lists: list[list[int]] = []  # per open list: [ordered, next number]
        self._row: list[str] | None = None  # cells of the open table row
        self._cell: list[str] | None = None
        self._in_title = False
        self._title_parts: list[str] = []
        self._heading_level: int | None = None
        self._heading_parts: list[str] = []
        self._heading_start: int | None = None
        self._last_line_of: str | None = None

    # --- paragraphs --------------------------------------------------------------------

    def _emit(self, text: str, line_of: str | None = None) -> int:
        """Append a paragraph; consecutive list items (`line_of="li"`) or table rows ("tr") are
        lines of one paragraph instead. Returns where `text` starts in the output."""
        if line_of is not None and line_of == self._last_line_of and self.paragraphs:
            self.paragraphs[-1] += "\n" + text
            self.length += 1
            start = self.length
            self.length += len(text)
            return start
        self._last_line_of = line_of
        if self.paragraphs:
            self.length += 2  # the "\n\n" separator
        start = self.length
        self.paragraphs.append(text)
        self.length += len(text)
        return start

    def _flush(self) -> None:
        raw = "".join(self._buffer)
        self._buffer.clear()
        if self._pre:
            text = raw.strip("\n")
            if not text.strip():
                return
            start = self._emit(text)
            self.code_blocks.append({"start": start, "end": start + len(text), "language": self._pre_language})
            return
        text = _SPACE.sub(" ", raw).strip()
        if not text:
            return
        listed = bool(self._lists) and self._heading_level is None
        if listed:
            text = f"{self._list_marker()} {text}"
        start = self._emit(text, "li" if listed else None)
        if self._heading_level is not None:
            if self._heading_start is None:
                self._heading_start = start
            self._heading_parts.append(text)

    def _list_marker(self) -> str:
        ordered, number = self._lists[-1]
        return f"{number}." if ordered else "-"

    # --- parser callbacks --------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._hidden == ["head"] and tag not in _HEAD_CONTENT:
            # Body content (or <body>) implicitly closes an unclosed <head>, as browsers do.
            self._hidden.clear()
        if self._in_title and (tag in _BLOCK or tag in _HIDDEN):
            self._end_title()  # an unclosed <title> must not swallow the page
        if tag in _HIDDEN:
            self._hidden.append(tag)
            return
        if tag == "title" and not self._hidden_now(ignore_head=True):
            self._in_title = True
            self._title_parts = []
            return
        if self._hidden:
            return
        classes = next((v or "" for k, v in attrs if k == "class"), "")
        if tag == "a" and "headerlink" in classes.split():
            self._skip_depth += 1  # Sphinx's "¶" permalink after every heading
            self._open.append((tag, "\x00skip"))
            return
        if tag not in ("br", "hr", "img", "input", "meta", "link", "wbr"):
            self._open.append((tag, classes))
        if tag == "br" and self._pre:
            self._buffer.append("\n")  # inside <pre> a line break is just a line break
            return
        if tag in _CELLS:
            self._cell = []
            return
        if self._pre and tag in _BLOCK:
            return  # markup inside a code block does not break it
        if tag in _BLOCK:
            if tag == "tr":
                self._flush()
                self._row = []
                return
            self._flush()
            if tag == "pre":
                self._pre += 1
                self._pre_language = self._language_here()
            if tag in _LISTS:
                self._lists.append([int(tag == "ol"), 1])
            if tag in _HEADINGS:
                self._heading_level = _HEADINGS[tag]
                self._heading_parts = []
                self._heading_start = None
        elif tag == "code" and self._pre and self._pre_language is None:
            self._pre_language = code_language(classes)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            if tag in self._hidden:
                # Close the innermost matching element and anything left open inside it.
                last = len(self._hidden) - 1 - self._hidden[::-1].index(tag)
                del self._hidden[last:]
            return
        if tag == "title" and self._in_title:
            self._end_title()
            return
        if self._hidden:
            return
        closed = self._close(tag)
        if closed == "\x00skip":
            self._skip_depth = max(0, self._skip_depth - 1)
            return
        if tag in _CELLS:
            if self._cell is not None and self._row is not None:
                self._row.append(_SPACE.sub(" ", "".join(self._cell)).strip().replace("|", "/"))
            self._cell = None
            return
        if tag == "tr":
            row, self._row = self._row, None
            if row and any(row):
                self._emit("| " + " | ".join(row) + " |", "tr")
            return
        if tag == "pre" and self._pre:
            self._flush()
            self._pre -= 1
            if not self._pre:
                self._pre_language = None
            return
        if self._pre and tag in _BLOCK:
            return
        if tag in _BLOCK:
            self._flush()
            if tag == "li" and self._lists:
                self._lists[-1][1] += 1
            if tag in _LISTS and self._lists:
                self._lists.pop()
            if tag in _HEADINGS and self._heading_level is not None:
                self._end_heading()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)
        elif not self._hidden and not self._skip_depth:
            if self._cell is not None:
                self._cell.append(data)
            elif self._row is not None:
                return  # whitespace between cells
            else:
                self._buffer.append(data)

    def close(self) -> None:
        super().close()
        self._flush()
        if self._heading_level is not None:
            self._end_heading()

    # --- helpers -----------------------------------------------------------------------

    def _close(self, tag: str) -> str | None:
        """Pop the innermost open `tag` (and anything left open inside it); its class."""
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                classes = self._open[i][1]
                skipped = sum(c == "\x00skip" for _, c in self._open[i + 1 :])
                self._skip_depth = max(0, self._skip_depth - skipped)
                del self._open[i:]
                return classes
        return None

    def _language_here(self) -> str | None:
        """The code language named on the <pre> or an enclosing element (Sphinx: the wrapper div)."""
        for _, classes in reversed(self._open[-4:]):
            language = code_language(classes)
            if language:
                return language
        return None

    def _hidden_now(self, ignore_head: bool = False) -> bool:
        return any(tag != "head" or not ignore_head for tag in self._hidden)

    def _end_title(self) -> None:
        self._in_title = False
        title = _SPACE.sub(" ", "".join(self._title_parts)).strip()
        if title and self.title is None:
            self.title = title

    def _end_heading(self) -> None:
        if self._heading_parts and self._heading_start is not None and self._heading_level is not None:
            text = " ".join(self._heading_parts)
            self.headings.append({"level": self._heading_level, "text": text, "start": self._heading_start})
        self._heading_level = None
        self._heading_parts = []
        self._heading_start = None


def render(html: str) -> tuple[str, str | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """(text, <title>, headings, code blocks) of an HTML string, all of its visible text."""
    parser = _Renderer()
    parser.feed(html)
    parser.close()
    return "\n\n".join(parser.paragraphs), parser.title, parser.headings, parser.code_blocks


def extract(html: str) -> tuple[str, str | None, list[dict[str, Any]]]:
    """(visible text, <title>, headings) of an HTML string (the whole page)."""
    text, title, headings, _ = render(html)
    return text, title, headings


_HEADERLINK = re.compile(r"""<a\b[^>]*\bclass=["']headerlink["'][^>]*>.*?</a>""", re.IGNORECASE | re.DOTALL)


def main_content_html(html: str) -> str | None:
    """The main content of a page as HTML (trafilatura), or None when it finds none."""
    try:
        import trafilatura
    except ImportError as exc:  # a dependency of ragkit: only a broken install gets here
        raise LoaderError(f"main-content extraction needs trafilatura ({exc}); pip install trafilatura") from None
    cleaned = _HEADERLINK.sub("", html)  # Sphinx's "¶" permalinks would end up in every heading
    try:
        extracted = trafilatura.extract(
            cleaned, output_format="html", include_formatting=True, include_tables=True,
            include_comments=False, include_links=False, include_images=False, favor_recall=True,
        )
        return _inline_code(extracted) if extracted else None
    except (ValueError, TypeError, RecursionError):  # markup libxml2 cannot make a tree of
        return None


_INLINE_PARENTS = frozenset("p h1 h2 h3 h4 h5 h6 li td th dt dd span a i b em strong".split())


def _inline_code(extracted: str) -> str:
    """trafilatura writes inline `<code>` as `<pre>` too; a one-line `<pre>` inside running text
    (a paragraph, heading, list item or cell) is inline code again, not a code block."""
    import lxml.html

    root = lxml.html.fromstring(extracted)
    for pre in list(root.iter("pre")):
        parent = pre.getparent()
        if parent is None or parent.tag == "pre" or any(child.tag == "pre" for child in pre):
            continue
        if parent.tag in _INLINE_PARENTS and "\n" not in pre.text_content().strip():
            pre.tag = "code"
    return lxml.html.tostring(root, encoding="unicode")


def main_content(html: str) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]] | None:
    """(text, headings, code blocks) of the page's main content, or None when none was found.

    trafilatura rewrites the page into its own tags, so code blocks lose their class; each one
    gets back the language of the identical `<pre>` block of the original page."""
    extracted = main_content_html(html)
    if not extracted:
        return None
    text, _, headings, code_blocks = render(extracted)
    if not text.strip():
        return None
    if any(block["language"] is None for block in code_blocks):
        whole, _, _, original = render(html)
        languages = {whole[b["start"] : b["end"]]: b["language"] for b in original if b["language"]}
        for block in code_blocks:
            if block["language"] is None:
                block["language"] = languages.get(text[block["start"] : block["end"]])
    return text, headings, code_blocks


def load(path: Path, config: LoaderConfig) -> list[Document]:
    data = read_bytes(path)
    declared = _META_CHARSET.search(data[:4096])
    html, encoding = decode_text(data, declared.group(1).decode("ascii") if declared else None)
    text, title, headings, code_blocks = render(html)
    if not text.strip():
        raise LoaderError("no visible text (empty page, or content only in scripts/markup)")
    metadata: dict[str, Any] = {"encoding": encoding}
    if config.html.main_content:
        main = main_content(html)
        words, main_words = len(text.split()), len(main[0].split()) if main else 0
        if main is None or main_words < min(MIN_MAIN_WORDS, words):
            metadata["main_content"] = "whole page (no main content found)"
        elif main_words > KEEP_WHOLE_PAGE * words and len(main[1]) < len(headings):
            # Nothing was worth removing and the headings got lost: trafilatura's fallback for
            # bare pages flattens the markup, so the whole page, with its structure, is better.
            metadata["main_content"] = "whole page (no boilerplate found)"
        else:
            text, headings, code_blocks = main
            metadata["main_content"] = "trafilatura"
    metadata["headings"] = headings
    if code_blocks:
        metadata["code_blocks"] = code_blocks
    if title:
        metadata["title"] = title
    return [make_document(path, text, FILE_TYPE, metadata)]


class HtmlLoaderConfig(ComponentConfig):
    """How .html/.htm pages become text."""

    name: Literal["html"] = Field("html", exclude=True)
    main_content: bool = Field(
        True, description="keep only the page's main content (trafilatura); false: all visible text"
    )


@register("loader", "html", HtmlLoaderConfig, extensions=(".html", ".htm"))
class HtmlLoader:
    """HTML pages: the main content (trafilatura) or all visible text, with headings, code blocks,
    title and declared charset."""

    def __init__(self, config: HtmlLoaderConfig) -> None:
        self.config = config

    def load(self, path: Path, settings: LoaderConfig) -> tuple[list[Document], list[LoadFailure]]:
        return (load(path, settings), [])
