"""The BM25 analyzer: text -> terms, configured by `BM25TokenizerConfig`.

Tokens are maximal runs of unicode word characters (`\\w+`: letters, digits, underscore, in
any script), so "don't" -> ["don", "t"] and "naïve café" -> ["naïve", "café"]. All the work
is done by C-level regex/str calls; Python only loops over tokens, never characters.
With `stemmer: english` the tokens are then reduced by the Snowball English stemmer
("running" -> "run", "studies" -> "studi"), in C by PyStemmer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from ragkit.components import Strict


class BM25TokenizerConfig(Strict):
    """The analyzer: how chunk and query texts become BM25 terms."""

    lowercase: bool = True
    stopwords: Literal["english", "none"] = "english"
    # "english": the Snowball English stemmer (PyStemmer, as bm25s uses), applied after stopwords.
    # The default since it won on boolq-dev (3,270 queries; nDCG@10 BM25 0.8563 -> 0.8705, fused
    # 0.9400 -> 0.9410) and did not lose on HaluEval-QA (BM25 0.9787 -> 0.9815, fused 0.9725 ->
    # 0.9729); see docs/benchmarks.md.
    stemmer: Literal["none", "english"] = "english"

TOKEN_RE = re.compile(r"\w+")

# NLTK's English stopword list (the apostrophe-free entries; the split-off pieces of
# contractions such as "don", "t", "ll", "ve" are included because `\w+` produces them).
ENGLISH_STOPWORDS: frozenset[str] = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what which
    who whom this that these those am is are was were be been being have has had having do
    does did doing a an the and but if or because as until while of at by for with about
    against between into through during before after above below to from up down in out on
    off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will
    just don should now d ll m o re ve y ain aren couldn didn doesn hadn hasn haven isn ma
    mightn mustn needn shan shouldn wasn weren won wouldn
    """.split()
)

Analyzer = Callable[[str], list[str]]


def make_analyzer(config: BM25TokenizerConfig | None = None) -> Analyzer:
    """Return `analyze(text) -> list[str]` for `config` (default: lowercase, English stopwords).

    Stopwords are matched case-insensitively even with `lowercase=False`, so a
    sentence-initial "The" is dropped like "the" is.
    """
    config = config or BM25TokenizerConfig()
    if config.stemmer not in ("none", "english"):  # the config type admits no other; guard for later
        raise ValueError(f"unsupported stemmer: {config.stemmer!r}")
    findall = TOKEN_RE.findall
    stop = ENGLISH_STOPWORDS if config.stopwords == "english" else None

    if config.lowercase:
        # Lowercase the tokens, not the text: str.lower() can emit combining marks
        # ("İ" -> "i̇") that `\w` does not match, which would split a word in two.
        def analyze(text: str) -> list[str]:
            tokens = map(str.lower, findall(text))
            return [t for t in tokens if t not in stop] if stop else list(tokens)

    elif stop:

        def analyze(text: str) -> list[str]:
            return [t for t in findall(text) if t.lower() not in stop]

    else:
        analyze = findall  # type: ignore[assignment]  # re's findall returns list[str] here

    if config.stemmer == "none":
        return analyze
    return _stemmed(analyze, config.stemmer)


def stemmer(language: str = "english") -> Callable[[list[str]], list[str]]:
    """The Snowball stemmer for `language` as `stem_words(words) -> stems`: ragkit's one stemmer
    (BM25 terms, the extractive generator's entity matching, the faithfulness features). PyStemmer's
    C implementation, with its own cache of recent words."""
    try:
        import Stemmer
    except ImportError:
        raise ValueError(f"the {language!r} stemmer needs PyStemmer: pip install PyStemmer") from None
    stem_words: Callable[[list[str]], list[str]] = Stemmer.Stemmer(language).stemWords
    return stem_words


def _stemmed(analyze: Analyzer, language: str) -> Analyzer:
    """`analyze` followed by the Snowball stemmer (stopwords are removed before stemming, as bm25s does)."""
    stem_words = stemmer(language)

    def analyze_and_stem(text: str) -> list[str]:
        return stem_words(analyze(text))

    return analyze_and_stem
