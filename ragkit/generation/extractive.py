"""The offline default generator: answers with the best-supported sentences of the top chunks.

Classic extractive QA, with no model beyond the bundled embedder:

1. Segment each retrieved chunk into quotable sentences (soft-wrapped lines joined; headings,
   tables, titles and sentences cut by chunk boundaries left out).
2. Refuse early when the question names something (a capitalised or alphanumeric term such as
   "Proxima" or "TRAPPIST-1") that occurs nowhere in the retrieved context: no sentence of it
   can be about that thing.
3. Score every sentence's support for the question:
       support = 0.65 * cosine(question, sentence)                  (bundled embedding model)
               + 0.35 * lexical overlap of question terms with the sentence, counting terms
                 found only in the previous sentence at half weight (so "Herschel spotted
                 *it* in 1781" still connects to "Uranus" one sentence earlier)
               + 0.15 * share of the expected answer types present and new to the question
                 (a date for when/what year, a name for who, a number for how many/how long…)
   Semantic similarity of a sentence with a pronoun is the better of the sentence alone and
   the sentence together with its previous one.
4. Quote the best sentences (at most `max_sentences`, each within 0.15 of the best,
   near-duplicates skipped) in reading order, each run of neighbouring sentences followed by
   the `[n]` of its chunk; a sentence that scored best together with its previous sentence is
   quoted with it. Below `min_support` the answer is "I don't know".

Text is only ever copied from the context, so instructions inside documents cannot change what
the generator does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from ragkit.components import ComponentConfig, register
from ragkit.generation.citations import resolve_citations
from ragkit.generation.prompt import NO_ANSWER
from ragkit.generation.stream import AnswerStream
from ragkit.protocols import ChatModel, Embedder, Generated
from ragkit.schema import Hit, Trace

SEMANTIC_WEIGHT = 0.65
LEXICAL_WEIGHT = 0.35
ANSWER_TYPE_WEIGHT = 0.15
PREVIOUS_SENTENCE_WEIGHT = 0.5
SELECTION_MARGIN = 0.15  # further sentences must be nearly as well supported as the best
DUPLICATE_COSINE = 0.92

# Sentence ends: ., ! or ? (plus closing quotes/brackets) followed by whitespace. Initials and
# common abbreviations ("John F. Kennedy", "Mt. Everest") are re-joined afterwards.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+")
_ABBREVIATION = re.compile(r"(?:\b[A-Z]|\b(?:Dr|Mr|Mrs|Ms|St|Mt|Jr|Sr|vs|etc|approx|No|Fig|e\.g|i\.e))\.$")
_TERMINAL = re.compile(r"[.!?][\"')\]]*$")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_MIN_WORDS = 4


@dataclass
class Sentence:
    block: int  # 1-based context block (= citation number)
    text: str
    previous: str = ""  # the sentence before it in the same chunk, for coreference


_PRONOUN = re.compile(r"\b(?:it|its|he|his|him|she|her|they|their|them|this|these)\b", re.I)
_YEAR_OR_MONTH = re.compile(
    r"\b(?:1\d{3}|20\d{2})\b|\b(?:January|February|March|April|May|June|July|August|September|"
    r"October|November|December)\b"
)
_NUMBER = re.compile(r"\d")
_CAPITALISED = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][\w'-]*")
_ENTITY = re.compile(r"\b(?:[A-Z][\w'-]*|\w*\d\w*(?:-\w+)*)\b")
_EXPECTS = {
    "date": re.compile(
        r"\bwhen\b|\b(?:what|which|in what|on what)\s+(?:year|date|day|month|century)\b", re.I
    ),
    "name": re.compile(r"\bwho\b|\bwhom\b|\bwhose\b|\bwhich\s+(?:astronomer|scientist|person|"
                       r"astronaut|spacecraft|mission|probe|rover|moon|planet|country)\b|\bwhat was the name\b", re.I),
    "number": re.compile(
        r"\bhow\s+(?:many|much|long|far|high|big|large|old|often|fast|hot|cold|deep|wide|heavy|tall)\b|"
        r"\bwhat\s+is\s+(?:the\s+)?(?:\w+\s+)?(?:diameter|distance|mass|temperature|period|speed|size|"
        r"height|radius|density|length)\b",
        re.I,
    ),
}


def expected_answer_types(question: str) -> list[str]:
    """Which kinds of fact would answer the question (date, name, number); may be several."""
    return [kind for kind, pattern in _EXPECTS.items() if pattern.search(question)]


def _has_new(kind: str, sentence: str, question_lower: str) -> bool:
    """Does `sentence` contain a `kind` of fact that the question itself does not state?"""
    if kind == "date":
        found = _YEAR_OR_MONTH.findall(sentence)
    elif kind == "number":
        found = re.findall(r"\d[\d,.]*", sentence)
    else:
        found = _CAPITALISED.findall(sentence)
    return any(item.lower() not in question_lower for item in found)


def question_entities(question: str) -> list[str]:
    """Names and codes the question asks about: capitalised words after the first, and
    alphanumeric terms (e.g. "TRAPPIST-1", "Voyager 2" -> "Voyager", "2" is ignored alone)."""
    words = _ENTITY.findall(question)
    first = question.split(maxsplit=1)[0] if question.split() else ""
    return [
        w for w in words
        if w != first and not w.isdigit() and len(w) > 1 and w.lower() not in _QUESTION_WORDS
    ]


_QUESTION_WORDS = {"who", "what", "when", "where", "which", "why", "how", "is", "was", "did", "does", "i"}


def _is_title(line: str) -> bool:
    """Headings, table rows and ALL-CAPS title lines stand alone, never soft-wrapped into text."""
    return line.startswith(("#", "|", "```")) or (line.upper() == line and sum(c.isalpha() for c in line) > 1)


def _is_heading_line(line: str, following: str, width: int) -> bool:
    """A section title inside wrapped text (PDF pages): a short line without final punctuation
    followed by a line that starts a sentence. Wrapped lines fill the width; titles do not."""
    return (
        bool(line)
        and bool(following[:1].isupper())
        and not _TERMINAL.search(line)
        and not line.endswith((",", ";", ":"))
        and len(line) < 0.6 * width
        and len(line.split()) <= 8
    )


def _units(text: str) -> list[tuple[str, bool]]:
    """(text, is_list_item) units: paragraphs, list items, headings and table rows.

    A single newline inside a paragraph is a soft wrap (PDF and plain-text line breaks) and
    becomes a space; a blank line, list marker, heading or table row starts a new unit.
    """
    units: list[tuple[str, bool]] = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines: list[str] = []
        listed = False
        raw_lines = paragraph.split("\n")
        width = max((len(line.strip()) for line in raw_lines), default=0)
        for number, line in enumerate(raw_lines):
            stripped = line.strip()
            following = raw_lines[number + 1].strip() if number + 1 < len(raw_lines) else ""
            if _is_heading_line(stripped, following, width):
                if lines:
                    units.append((" ".join(lines), listed))
                    lines = []
                units.append((f"# {stripped}", False))  # marked as a heading: never quoted
                continue
            if not stripped:
                continue
            if set(stripped) <= set("-=") and len(stripped) >= 3:  # setext underline: a heading above
                if lines:
                    lines.pop()
                if lines:
                    units.append((" ".join(lines), listed))
                    lines = []
                continue
            starts_unit = bool(_LIST_MARKER.match(line)) or stripped.startswith(("#", "|", "```"))
            if lines and (starts_unit or _is_title(lines[-1]) or _is_title(stripped)):
                units.append((" ".join(lines), listed))
                lines = []
            if not lines:
                listed = bool(_LIST_MARKER.match(line))
                stripped = _LIST_MARKER.sub("", stripped) if listed else stripped
            lines.append(stripped)
        if lines:
            units.append((" ".join(lines), listed))
    return units


def split_sentences(text: str) -> list[str]:
    """Quotable sentences of a chunk text.

    Left out: headings, table rows, titles and other lines that are not sentences (no final
    punctuation, unless a list item), and the pieces cut by chunk boundaries (a first piece
    that starts in lower case, a last piece without final punctuation): a truncated sentence
    can say something the document does not.
    """
    sentences: list[str] = []
    units = _units(text)
    for index, (unit, listed) in enumerate(units):
        if _is_title(unit):
            continue
        pieces: list[str] = []
        for piece in _SENTENCE_END.split(unit):
            if pieces and _ABBREVIATION.search(pieces[-1]):
                pieces[-1] += " " + piece
            else:
                pieces.append(piece)
        if index == 0 and pieces and pieces[0][:1].islower():
            pieces = pieces[1:]
        for piece in pieces:
            piece = " ".join(piece.split())
            if len(piece.split()) < _MIN_WORDS:
                continue
            if _TERMINAL.search(piece) or (listed and len(pieces) == 1 and index < len(units) - 1):
                sentences.append(piece)
    return sentences


class ExtractiveGeneratorConfig(ComponentConfig):
    name: Literal["extractive"] = "extractive"
    max_sentences: int = Field(3, gt=0)
    min_support: float = Field(
        0.35, ge=0, le=1, description="below this best-sentence support the answer is 'I don't know'"
    )


@register("generator", "extractive", ExtractiveGeneratorConfig)
class ExtractiveGenerator:
    """Quotes and cites the best-supported sentences of the hits: no LLM, fully offline."""

    def __init__(
        self,
        config: ExtractiveGeneratorConfig,
        embedder: Embedder,
        analyzer: Callable[[str], list[str]],
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.analyzer = analyzer

    @property
    def chat_model(self) -> ChatModel | None:
        return None  # no LLM: query transforms and the LLM reranker cannot be used with it

    def generate_stream(self, question: str, hits: list[Hit], trace: Trace) -> AnswerStream:
        """The whole answer at once, as one delta (nothing is generated token by token)."""
        return AnswerStream.of(self.generate(question, hits, trace))

    def support(
        self, question: str, sentences: list[Sentence]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per sentence: support score, its vector (duplicate detection), and whether it is
        better understood together with the previous sentence (a pronoun resolved there)."""
        # Sentences with a pronoun are also embedded with their previous sentence: "Herschel
        # spotted it in 1781" is about Uranus only in the company of the sentence before.
        paired = [i for i, s in enumerate(sentences) if s.previous and _PRONOUN.search(s.text)]
        vectors = self.embedder.embed(
            [question] + [s.text for s in sentences]
            + [f"{sentences[i].previous} {sentences[i].text}" for i in paired]
        )
        sentence_vectors = vectors[1 : 1 + len(sentences)]
        semantic = sentence_vectors @ vectors[0]
        with_previous = np.zeros(len(sentences), dtype=bool)
        for i, pair_vector in zip(paired, vectors[1 + len(sentences) :]):
            pair_score = float(pair_vector @ vectors[0])
            if pair_score > semantic[i]:
                semantic[i], with_previous[i] = pair_score, True
        terms = set(self.analyzer(question))
        kinds = expected_answer_types(question)
        question_lower = question.lower()
        lexical = np.zeros(len(sentences))
        typed = np.zeros(len(sentences))
        for i, sentence in enumerate(sentences):
            own = terms & set(self.analyzer(sentence.text))
            before = (terms & set(self.analyzer(sentence.previous))) - own
            if terms:
                lexical[i] = (len(own) + PREVIOUS_SENTENCE_WEIGHT * len(before)) / len(terms)
            if kinds:
                typed[i] = sum(_has_new(k, sentence.text, question_lower) for k in kinds) / len(kinds)
        support = SEMANTIC_WEIGHT * semantic + LEXICAL_WEIGHT * lexical + ANSWER_TYPE_WEIGHT * typed
        return support, sentence_vectors, with_previous

    def generate(self, question: str, hits: list[Hit], trace: Trace) -> Generated:
        sentences: list[Sentence] = []
        for n, hit in enumerate(hits, start=1):
            previous = ""
            for text in split_sentences(hit.chunk.text):
                sentences.append(Sentence(block=n, text=text, previous=previous))
                previous = text
        if not sentences:
            trace.warn("extractive: the retrieved context has no quotable sentence")
            return Generated(text=NO_ANSWER)
        context = " ".join(hit.chunk.text for hit in hits).lower()
        missing = [e for e in question_entities(question) if _stem(e.lower()) not in context]
        if missing:
            trace.warn(
                "extractive: the retrieved context never mentions "
                + ", ".join(repr(m) for m in missing)
                + " from the question"
            )
            return Generated(text=NO_ANSWER)
        scores, vectors, with_previous = self.support(question, sentences)
        best = float(scores.max())
        if best < self.config.min_support:
            trace.warn(
                f"extractive: no sentence supports an answer (best support {best:.2f} < "
                f"min_support {self.config.min_support:.2f})"
            )
            return Generated(text=NO_ANSWER)
        chosen: list[int] = []
        for i in np.argsort(-scores, kind="stable"):
            if len(chosen) == self.config.max_sentences or scores[i] < best - SELECTION_MARGIN:
                break
            if any(float(vectors[i] @ vectors[j]) > DUPLICATE_COSINE for j in chosen):
                continue
            chosen.append(int(i))
        # Quote in reading order; a sentence that needs its antecedent brings it along, and
        # neighbouring sentences of one chunk become one quote with one citation.
        picked = set(chosen) | {i - 1 for i in chosen if with_previous[i]}
        quotes: list[str] = []
        run: list[int] = []
        for i in sorted(picked):
            if run and (i != run[-1] + 1 or sentences[i].block != sentences[run[-1]].block):
                quotes.append(" ".join(sentences[j].text for j in run) + f" [{sentences[run[-1]].block}]")
                run = []
            run.append(i)
        quotes.append(" ".join(sentences[j].text for j in run) + f" [{sentences[run[-1]].block}]")
        return resolve_citations(" ".join(quotes), hits, trace)


def _stem(word: str) -> str:
    """Possessives and plurals still count as mentions ("Jupiter's" -> "jupiter")."""
    for suffix in ("'s", "’s", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: -len(suffix)]
    return word
