"""Sentences stored at ingest (ragkit/indexes/sentences.py) and duplicate documents.

The index tests use the real bundled MiniLM model, faiss and BM25 through `RAG`.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ragkit import RAG
from ragkit.config import LoaderConfig, PipelineConfig
from ragkit.indexes.sentences import SENTENCES_FILE, SentenceSpan, display, pool_sentence_vectors, segment
from ragkit.indexes.snapshot import IndexSnapshot
from ragkit.indexes.store import text_hash
from ragkit.loaders import load_file
from ragkit.loaders.duplicates import DuplicateFilter, sphinx_page_of
from ragkit.schema import Trace

FIXTURES = Path(__file__).parent / "fixtures" / "html"


def quoted(text: str) -> list[str]:
    return [display(text[s.start : s.end]) for s in segment(text)]


def test_segment_spans_point_into_the_text_and_skip_what_is_not_a_sentence() -> None:
    text = (
        "cut at the start. Arthur's Magazine was an American periodical in the 19th century.First for "
        "Women is a magazine published by Bauer Media Group.\n\nrandom.choice(seq)\n\nReturn a random "
        "element from the non-empty sequence seq.\n\n>>> random.choice([1, 2])\n\n| a | b |\n\n"
        "Dr. Smith met Mr. Jones in St. Louis on Tuesday. It ends mid"
    )
    spans = segment(text)
    assert quoted(text) == [
        "Arthur's Magazine was an American periodical in the 19th century.",
        "First for Women is a magazine published by Bauer Media Group.",
        "Return a random element from the non-empty sequence seq.",
        "Dr. Smith met Mr. Jones in St. Louis on Tuesday.",
    ]
    lead = spans[2].lead
    assert lead is not None and text[lead[0] : lead[1]] == "random.choice(seq)"
    assert spans[1].opens_paragraph is False and spans[2].opens_paragraph is True


def test_pooled_sentence_vectors_average_the_tokens_inside_each_span() -> None:
    tokens = np.array([[9, 9], [1, 0], [3, 0], [0, 2], [9, 9]], dtype=np.float32)  # [CLS] a b c [SEP]
    offsets = [(0, 0), (0, 1), (2, 3), (4, 5), (0, 0)]
    spans = [SentenceSpan(0, 3), SentenceSpan(4, 5), SentenceSpan(7, 9)]
    vectors = pool_sentence_vectors(tokens, offsets, spans)
    np.testing.assert_allclose(vectors[0], [1.0, 0.0])  # mean (2, 0), normalised
    np.testing.assert_allclose(vectors[1], [0.0, 1.0])
    assert not vectors[2].any()  # past the model's window: no vector


def test_sphinx_twins_and_identical_files_are_reported_not_indexed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "library").mkdir(parents=True)
    (site / "_sources" / "library").mkdir(parents=True)
    (site / "copy").mkdir()
    shutil.copy(FIXTURES / "sphinx.html", site / "library" / "inventory.html")
    shutil.copy(FIXTURES / "news.html", site / "news.html")
    shutil.copy(FIXTURES / "news.html", site / "copy" / "news.html")
    (site / "_sources" / "library" / "inventory.rst.txt").write_text(
        ":mod:`shelfkit.inventory` --- Track stock levels\n"
        "=================================================\n\n"
        "This module keeps a running count of every item on every shelf of a warehouse. Counts are stored\n"
        "per location, so the same product can be stocked in several places.\n\n"
        "Counting items\n--------------\n\n.. function:: count(sku, location=None)\n\n"
        "   Return the number of units of *sku* in stock. Without a *location* the units of every\n"
        "   location are added up. An unknown *sku* raises :exc:`UnknownItem`.\n",
        encoding="utf-8",
    )
    (site / "_sources" / "unrelated.rst.txt").write_text("A page of its own about something else entirely.\n", encoding="utf-8")
    assert sphinx_page_of(site / "_sources" / "library" / "inventory.rst.txt") == site / "library" / "inventory.html"
    # Sorted as discovery returns them: the twin comes before its page and must wait for it.
    files = sorted(p for p in site.rglob("*") if p.is_file())
    dupes = DuplicateFilter(files)
    kept = [d.source for d in dupes.filter(doc for f in files for doc in load_file(f, LoaderConfig()).documents)]
    kept += [d.source for d in dupes.finish()]
    root = site.as_posix()
    assert sorted(kept) == [f"{root}/_sources/unrelated.rst.txt", f"{root}/copy/news.html", f"{root}/library/inventory.html"]
    found = {d.source: (d.duplicate_of, d.reason) for d in dupes.duplicates}
    assert found[f"{root}/news.html"] == (f"{root}/copy/news.html", "same content")
    twin_of, reason = found[f"{root}/_sources/library/inventory.rst.txt"]
    assert twin_of == f"{root}/library/inventory.html" and reason.startswith("Sphinx source of the page")


@pytest.mark.slow
def test_ingest_stores_sentences_by_text_hash_and_answers_use_them(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tram.md").write_text(
        "# Tram\n\nThe city council voted to build a tram line to the harbour. The line will have nine stops "
        "and opens in 2029.\n", encoding="utf-8")
    (docs / "bread.md").write_text(
        "# Bread\n\nA starter is a culture of wild yeast living in flour and water. It must be fed twice a day.\n",
        encoding="utf-8")
    shutil.copy(docs / "tram.md", docs / "tram-copy.md")
    index = tmp_path / "index"
    rag = RAG(PipelineConfig(), index)
    report = rag.ingest([docs])
    assert [d.source for d in report.duplicates] == [f"{docs.as_posix()}/tram.md"]

    def stored() -> tuple[set[str], set[str]]:
        """(text hashes of the live chunks, text hashes with stored sentence vectors in the segments
        holding them)."""
        snapshot = IndexSnapshot.open(index)
        try:
            rows = np.flatnonzero(snapshot.view.live()).tolist()
            chunk_hashes = {text_hash(c.text) for c in snapshot.store.chunks_by_rows(rows)}
            sentence_hashes: set[str] = set()
            for segment in snapshot.view.segments:
                with sqlite3.connect(segment.directory / SENTENCES_FILE) as db:
                    sentence_hashes |= {h for (h,) in db.execute("SELECT text_hash FROM chunk_sentences WHERE vectors IS NOT NULL")}
        finally:
            snapshot.close()
        return chunk_hashes, sentence_hashes

    chunks, sentences = stored()
    assert chunks == sentences  # one row per chunk text, keyed by its hash, with vectors
    answer = rag.query("How many stops will the tram line have?")
    assert "nine stops" in answer.text and not any("no stored sentences" in w for w in answer.trace.warnings)
    answer = rag.query("How often must the starter be fed?")
    assert "A starter is a culture of wild yeast living in flour and water. It must be fed twice a day." in answer.text

    (docs / "bread.md").write_text("# Bread\n\nRye bread keeps for a week when wrapped in linen cloth.\n", encoding="utf-8")
    rag.ingest([docs])
    chunks, sentences = stored()
    assert chunks <= sentences  # the new text's sentences are stored (the old text's stay in its segment until a merge)
    rag.delete([docs / "bread.md"])
    chunks, sentences = stored()
    assert chunks <= sentences
    rag.optimize()  # merging copies the live chunks' sentences only
    chunks, sentences = stored()
    assert chunks == sentences
    rag.close()
    trace = Trace()
    fresh = RAG.open(index)
    fresh.generator.generate("How many stops?", fresh.retrieve("tram stops", trace=trace), trace)
    assert not any("no stored sentences" in w for w in trace.warnings)
    fresh.close()
