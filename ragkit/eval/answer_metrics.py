"""Answer metrics as components (stage "answer_metric"): each scores answered questions.

`ragkit eval suite` (and `eval qa`) compute every metric a suite asks for through the registry, so a
plugin's metric is usable by name in a suite YAML as soon as its package is installed:

    @register("answer_metric", "brevity", BrevityConfig)
    class Brevity:
        name = "brevity"
        description = "share of answers under 30 words"
        def __init__(self, config, embedder=None): ...
        def score(self, samples): return [float(len(s.answer.split()) < 30) for s in samples]
        def aggregate(self, samples, values): return mean_of(values)

A metric returns one value per sample, None where it does not apply (e.g. abstention accuracy on
an answerable question); the aggregate is the mean of the non-None values unless the metric
says otherwise. The text metrics themselves are in `answers.py` (SQuAD conventions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ragkit.components import ComponentConfig, register
from ragkit.eval.answers import (
    containment,
    context_precision,
    context_recall,
    exact_match,
    keyword_recall,
    token_f1,
)
from ragkit.protocols import AnswerSample, Embedder

__all__ = ["mean_of"]


def mean_of(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


class _Metric:
    """What the simple metrics share: per-sample scoring, mean aggregate."""

    name = ""
    description = ""

    def __init__(self, config: ComponentConfig, embedder: Embedder | None = None) -> None:
        self.config = config

    def score(self, samples: Sequence[AnswerSample]) -> list[float | None]:
        return [self.one(sample) for sample in samples]

    def one(self, sample: AnswerSample) -> float | None:
        raise NotImplementedError

    def aggregate(self, samples: Sequence[AnswerSample], values: Sequence[float | None]) -> float | None:
        return mean_of(values)


def _config(metric_name: str, doc: str) -> type[ComponentConfig]:
    """A metric's config class: only its name (the built-in metrics have no options)."""
    return type(
        f"{metric_name.title().replace('_', '')}Config",
        (ComponentConfig,),
        {"__annotations__": {"name": Literal[metric_name]}, "name": metric_name, "__doc__": doc, "__module__": __name__},
    )


def _refs(sample: AnswerSample) -> list[Any]:
    return [*sample.references, *([sample.keywords] if sample.keywords else [])]


def _metric(metric_name: str, description: str) -> Any:
    """Class decorator: register a `_Metric` subclass as the answer metric `metric_name`."""

    def decorate(cls: type[_Metric]) -> type[_Metric]:
        cls.name = metric_name
        cls.description = description
        return register("answer_metric", metric_name, _config(metric_name, description))(cls)

    return decorate


@_metric("context_precision", "share of the generator's hits that come from an expected source")
class ContextPrecision(_Metric):
    def one(self, sample: AnswerSample) -> float | None:
        return context_precision(sample.retrieved_sources, sample.expected_sources) if sample.expected_sources else None


@_metric("context_recall", "share of the expected sources among the generator's hits")
class ContextRecall(_Metric):
    def one(self, sample: AnswerSample) -> float | None:
        return context_recall(sample.retrieved_sources, sample.expected_sources) if sample.expected_sources else None


@_metric("exact_match", "normalised answer equals a reference")
class ExactMatch(_Metric):
    def one(self, sample: AnswerSample) -> float | None:
        refs = sample.references + sample.keywords
        return exact_match(sample.answer, refs) if refs else None


@_metric("token_f1", "token F1 against the best reference")
class TokenF1(_Metric):
    def one(self, sample: AnswerSample) -> float | None:
        refs = sample.references + sample.keywords
        return token_f1(sample.answer, refs) if refs else None


@_metric("containment", "a reference (or all keywords) occurs in the answer")
class Containment(_Metric):
    def one(self, sample: AnswerSample) -> float | None:
        return containment(sample.answer, _refs(sample)) if (sample.references or sample.keywords) else None


@_metric("keyword_recall", "share of keywords present in the answer")
class KeywordRecall(_Metric):
    def one(self, sample: AnswerSample) -> float | None:
        return keyword_recall(sample.answer, sample.keywords) if sample.keywords else None


@_metric("abstention_accuracy", "unanswerable questions answered 'I don't know'")
class AbstentionAccuracy(_Metric):
    def one(self, sample: AnswerSample) -> float | None:
        return None if sample.expected_sources else float(sample.abstained)


@_metric("false_abstention_rate", "answerable questions answered 'I don't know'")
class FalseAbstentionRate(_Metric):
    def one(self, sample: AnswerSample) -> float | None:
        return float(sample.abstained) if sample.expected_sources else None


class _Faithfulness(_Metric):
    """Offline faithfulness (bundled embeddings, no LLM) of answers that are not 'I don't know',
    against the context they were given. Scored once per samples list; results are kept on the
    samples (`details["faithfulness"]`) so `claims_supported` reuses them."""

    def __init__(self, config: ComponentConfig, embedder: Embedder | None = None) -> None:
        super().__init__(config)
        self.embedder = embedder

    def results(self, samples: Sequence[AnswerSample]) -> list[Any]:
        todo = [s for s in samples if "faithfulness" not in s.details and not s.abstained and s.hits and s.answer]
        if todo:
            from ragkit.eval.faithfulness import OfflineFaithfulnessScorer

            scorer = OfflineFaithfulnessScorer(embedder=self.embedder)
            rows = [("\n\n".join(h.chunk.text for h in s.hits), s.claims_text, s.question) for s in todo]
            for sample, result in zip(todo, scorer.score_batch(rows)):
                sample.details["faithfulness"] = result
        return [s.details.get("faithfulness") for s in samples]


@_metric("faithfulness", "offline faithfulness score of answers (not 'I don't know') against their context")
class Faithfulness(_Faithfulness):
    def score(self, samples: Sequence[AnswerSample]) -> list[float | None]:
        return [None if r is None else float(r.score) for r in self.results(samples)]


@_metric("claims_supported", "share of answer claims the offline scorer marks supported")
class ClaimsSupported(_Faithfulness):
    def score(self, samples: Sequence[AnswerSample]) -> list[float | None]:
        return [None if r is None else sum(c.supported for c in r.claims) / len(r.claims) if r.claims else None
                for r in self.results(samples)]  # fmt: skip

    def aggregate(self, samples: Sequence[AnswerSample], values: Sequence[float | None]) -> float | None:
        """Supported claims / all claims over the samples (every claim weighs the same)."""
        results = [s.details["faithfulness"] for s in samples if s.details.get("faithfulness") is not None]
        total = sum(len(r.claims) for r in results)
        return sum(c.supported for r in results for c in r.claims) / total if total else None
