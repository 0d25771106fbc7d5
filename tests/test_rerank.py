"""Cross-encoder reranking.

No cross-encoder ships offline, so the model-loading plumbing is exercised with a tiny, randomly
initialised BERT cross-encoder that this test builds and saves to a local directory. Its scores
are meaningless; what is checked is that ragkit loads a local model path through
sentence-transformers, reorders hits exactly by the model's own scores, and that an unavailable
model skips the stage with a trace warning instead of failing the query.
"""

import pytest
import torch
from sentence_transformers import CrossEncoder
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from ragkit.config import CrossEncoderRerankConfig
from ragkit.retrieval.rerank import CrossEncoderReranker
from ragkit.schema import Chunk, Document, Hit, RetrieverScore, Trace

WORDS = "the a of in on saturn jupiter mars ring rings moon moons red planet storm great spot largest".split()


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-cross-encoder")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    return path


def _hits(texts):
    document = Document(id="doc", source="doc.txt", text=" ".join(texts))
    hits, offset = [], 0
    for rank, text in enumerate(texts, start=1):
        chunk = Chunk.from_span(document, offset, offset + len(text))
        offset += len(text) + 1
        hits.append(Hit(chunk=chunk, score=1.0 / rank, retrievers={"fusion": RetrieverScore(rank=rank, score=1.0 / rank)}))
    return hits


TEXTS = ["saturn rings of the planet", "the great red spot storm", "mars the red planet", "jupiter largest moons"]


def test_local_cross_encoder_reorders_by_model_scores(tiny_cross_encoder):
    reranker = CrossEncoderReranker(CrossEncoderRerankConfig(model=str(tiny_cross_encoder), max_length=64))
    trace = Trace()
    question = "which planet has the great red spot"
    reranked = reranker.rerank(question, _hits(TEXTS), trace)
    assert trace.warnings == []
    expected = CrossEncoder(str(tiny_cross_encoder), max_length=64).predict([(question, t) for t in TEXTS])
    order = sorted(range(len(TEXTS)), key=lambda i: -float(expected[i]))
    assert [h.chunk.text for h in reranked] == [TEXTS[i] for i in order]
    assert [h.retrievers["rerank"].rank for h in reranked] == [1, 2, 3, 4]
    assert reranked[0].score == pytest.approx(float(expected[order[0]]), abs=1e-5)
    assert all("fusion" in h.retrievers for h in reranked)  # earlier stages' ranks are kept


def test_unavailable_model_is_skipped_with_a_warning():
    reranker = CrossEncoderReranker(CrossEncoderRerankConfig(model="cross-encoder/ms-marco-MiniLM-L-6-v2"))
    hits = _hits(TEXTS)
    trace = Trace()
    result = reranker.rerank("question", hits, trace)
    assert result == hits
    assert len(trace.warnings) == 1
    assert "rerank skipped" in trace.warnings[0] and "ms-marco-MiniLM-L-6-v2" in trace.warnings[0]
    # the failure is remembered: later queries do not retry the load, but still warn
    second = Trace()
    reranker.rerank("question", hits, second)
    assert second.warnings == trace.warnings


def test_local_path_that_is_not_a_model_is_skipped(tmp_path):
    reranker = CrossEncoderReranker(CrossEncoderRerankConfig(model=str(tmp_path)))
    trace = Trace()
    assert reranker.rerank("q", _hits(TEXTS[:2]), trace) == _hits(TEXTS[:2])
    assert "rerank skipped" in trace.warnings[0]
