"""Tests for ragkit.eval.faithfulness: claims, evidence features, generalisation, AUROC."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from ragkit.eval.faithfulness import (
    FaithfulnessResult,
    OfflineFaithfulnessScorer,
    aggregate_claim_scores,
    auroc,
    best_threshold_accuracy,
    split_claims,
    split_sentences,
)

HALUEVAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "faithfulness" / "halueval-qa-dev.jsonl"


@pytest.fixture(scope="module")
def scorer() -> OfflineFaithfulnessScorer:
    pytest.importorskip("sentence_transformers")
    from ragkit.models import ModelUnavailable, resolve_model

    try:
        resolve_model("bundled:all-MiniLM-L6-v2")
    except ModelUnavailable as exc:  # pragma: no cover - depends on the environment
        pytest.skip(str(exc))
    return OfflineFaithfulnessScorer()


# ---------------------------------------------------------------------------------- claims


def test_short_answer_is_one_claim() -> None:
    assert split_claims("Arthur's Magazine") == ["Arthur's Magazine"]
    assert split_claims("Sarajevo, a beautiful European city.") == ["Sarajevo, a beautiful European city."]
    assert split_claims("") == []
    assert split_claims("   ") == []


def test_sentences_abbreviations_and_glued_sentences() -> None:
    text = (
        "Dr. J. R. R. Tolkien lived in the U.S. for a while. He wrote The Hobbit in 1937!"
        "Did he?\nA new line starts a new claim"
    )
    assert split_claims(text) == [
        "Dr. J. R. R. Tolkien lived in the U.S. for a while.",
        "He wrote The Hobbit in 1937!",
        "Did he?",
        "A new line starts a new claim",
    ]
    # a period glued to the next sentence (common in scraped contexts)
    glued = "It was published in Philadelphia in the 19th century.First for Women is a magazine."
    assert split_sentences(glued) == [
        "It was published in Philadelphia in the 19th century.",
        "First for Women is a magazine.",
    ]
    # decimals and initials inside a sentence do not split it
    assert len(split_sentences("Pi is about 3.14 and J. Smith knows it.")) == 1


def test_long_compound_sentence_is_split_into_clauses() -> None:
    sentence = (
        "The company earned $1,500,000 in 2019, and it hired 12 new engineers; its chief executive "
        "said revenue would double, but analysts were skeptical about the forecast."
    )
    assert split_claims(sentence) == [
        "The company earned $1,500,000 in 2019",
        "it hired 12 new engineers",
        "its chief executive said revenue would double",
        "analysts were skeptical about the forecast.",
    ]
    # a short sentence with "and" stays whole
    assert split_claims("Tom and Jerry, and friends, went home.") == ["Tom and Jerry, and friends, went home."]


# ---------------------------------------------------------------------- number / entity evidence

CTX = (
    "The Riverside Bridge opened in 1932 and cost $1,200,000 to build. "
    "It was designed by the engineer Margaret Holloway. "
    "The bridge carries about 45,000 vehicles a day across the Tern River."
)


def _claim(result: FaithfulnessResult, i: int = 0):
    return result.claims[i]


def test_number_support_normalises_formats(scorer: OfflineFaithfulnessScorer) -> None:
    plain = scorer.score(CTX, "The bridge cost 1200000 dollars and opened in 1932.")
    daily = scorer.score(CTX, "About 45000 vehicles cross it daily.")
    scaled = scorer.score(CTX, "Building it cost 1.2 million dollars.")
    for result in (plain, daily, scaled):
        assert _claim(result).features["num"] == 1.0, result


def test_wrong_number_or_date_is_unsupported(scorer: OfflineFaithfulnessScorer) -> None:
    right = scorer.score(CTX, "The Riverside Bridge opened in 1932 and cost $1,200,000 to build.")
    wrong_year = scorer.score(CTX, "The Riverside Bridge opened in 1934 and cost $1,200,000 to build.")
    right_count = scorer.score(CTX, "The bridge carries about 45,000 vehicles a day.")
    wrong_count = scorer.score(CTX, "The bridge carries about 54,000 vehicles a day.")
    assert _claim(wrong_year).features["num"] == 0.5
    assert _claim(wrong_count).features["num"] == 0.0
    assert _claim(right).supported and _claim(right_count).supported
    assert not _claim(wrong_year).supported and not _claim(wrong_count).supported
    assert wrong_year.score < right.score
    assert wrong_count.score < right_count.score


def test_entity_support(scorer: OfflineFaithfulnessScorer) -> None:
    right = scorer.score(CTX, "The bridge was designed by Margaret Holloway.")
    swapped = scorer.score(CTX, "The bridge was designed by Margaret Thatcher.")
    invented = scorer.score(CTX, "The bridge was designed by Gustave Eiffel.")
    assert _claim(right).features["ent"] == 1.0
    assert _claim(swapped).features["ent"] < 1.0
    assert _claim(invented).features["ent"] == 0.0
    assert right.score > swapped.score
    assert right.score > invented.score
    # the evidence is the context sentence that supports the claim
    assert "Margaret Holloway" in _claim(right).evidence


def test_short_answer_uses_the_question(scorer: OfflineFaithfulnessScorer) -> None:
    q = "Who designed the Riverside Bridge?"
    right = scorer.score(CTX, "Margaret Holloway", question=q)
    wrong = scorer.score(CTX, "Isambard Brunel", question=q)
    assert len(right.claims) == 1 and right.claims[0].text == "Margaret Holloway"
    assert right.claims[0].supported and not wrong.claims[0].supported
    assert right.score > wrong.score + 0.3


def test_negation_without_negated_evidence_is_penalised(scorer: OfflineFaithfulnessScorer) -> None:
    pos = scorer.score(CTX, "The bridge carries about 45,000 vehicles a day across the Tern River.")
    neg = scorer.score(CTX, "The bridge does not carry vehicles across the Tern River.")
    assert _claim(pos).features["pol"] == 1.0
    assert _claim(neg).features["pol"] == 0.0
    assert neg.score < pos.score


def test_result_shape_and_batch_equals_single(scorer: OfflineFaithfulnessScorer) -> None:
    rows = [
        {"context": CTX, "answer": "It opened in 1932. Margaret Holloway designed it.", "question": None},
        (CTX, "It opened in 1950."),
        {"context": CTX, "answer": ""},
    ]
    batch = scorer.score_batch(rows)
    assert len(batch) == 3
    single = scorer.score(CTX, "It opened in 1932. Margaret Holloway designed it.")
    assert batch[0].score == pytest.approx(single.score, abs=1e-6)
    assert len(batch[0].claims) == 2
    for claim in batch[0].claims:
        assert 0.0 <= claim.score <= 1.0
        assert claim.evidence in split_sentences(CTX)
    assert batch[2].score == 1.0 and batch[2].claims == []
    # pydantic round trip
    assert FaithfulnessResult.model_validate_json(batch[0].model_dump_json()) == batch[0]


def test_aggregate_is_monotone_and_pulled_down_by_worst_claim() -> None:
    assert aggregate_claim_scores([]) == 1.0
    assert aggregate_claim_scores([0.9, 0.9]) == pytest.approx(0.9)
    assert aggregate_claim_scores([0.9, 0.1]) < aggregate_claim_scores([0.9, 0.5])
    assert aggregate_claim_scores([0.9, 0.9, 0.1]) < 0.5


# ------------------------------------------------- hand-written generalisation corpus
# Different domains from HaluEval's Wikipedia QA, multi-sentence answers in the style of a RAG
# system or a summary. Each hallucinated answer keeps most of the faithful content and adds one
# typical error: a wrong number, an invented entity, a flipped polarity, an unsupported detail.

GENERALISATION = [
    {
        "context": (
            "To reset the router, hold the recessed reset button for 10 seconds while the device is "
            "powered on. The status light will blink amber and the router restarts with factory "
            "settings. After the reset, the default Wi-Fi password is printed on the label under the "
            "device. Firmware updates are installed from the Settings page of the admin app."
        ),
        "faithful": (
            "Hold the reset button for 10 seconds while the router is on. The light blinks amber and "
            "the router comes back with factory settings. The default Wi-Fi password is on the label "
            "underneath the device."
        ),
        "hallucinated": (
            "Hold the reset button for 30 seconds while the router is on. The light blinks amber and "
            "the router comes back with factory settings. The default Wi-Fi password is sent to you "
            "by email from Netgear support."
        ),
    },
    {
        "context": (
            "Amoxicillin is a penicillin-type antibiotic used to treat bacterial infections such as "
            "ear infections and strep throat. The usual adult dose is 500 mg every 8 hours. It does "
            "not work against viral infections like the common cold. Common side effects include "
            "nausea and rash."
        ),
        "faithful": (
            "Amoxicillin is a penicillin antibiotic for bacterial infections like strep throat. "
            "Adults usually take 500 mg every 8 hours. It is not effective against colds or other "
            "viral infections."
        ),
        "hallucinated": (
            "Amoxicillin is a penicillin antibiotic for bacterial infections like strep throat. "
            "Adults usually take 250 mg twice a day. It is also effective against the common cold "
            "and the flu, and it was discovered by Alexander Fleming in 1928."
        ),
    },
    {
        "context": (
            "Acme Corp reported revenue of $4.2 billion for fiscal 2023, up 8% from the previous "
            "year. Growth came mainly from the cloud services division. The company opened a new "
            "office in Lisbon and plans to hire 300 engineers in 2024. Chief executive Dana Ortiz "
            "said margins would remain stable."
        ),
        "faithful": (
            "Acme's fiscal 2023 revenue was $4.2 billion, an 8% increase, driven mostly by cloud "
            "services. It opened a Lisbon office and plans to hire 300 engineers in 2024."
        ),
        "hallucinated": (
            "Acme's fiscal 2023 revenue was $4.2 billion, a 12% increase, driven mostly by hardware "
            "sales. It opened an office in Berlin and plans to hire 300 engineers in 2024."
        ),
    },
    {
        "context": (
            "Sourdough bread is leavened with a starter of wild yeast and lactic acid bacteria instead "
            "of commercial yeast. The starter is fed with flour and water every day. A typical loaf "
            "rises for 4 to 12 hours before baking at about 230 degrees Celsius. The bacteria give "
            "the bread its sour taste."
        ),
        "faithful": (
            "Sourdough uses a starter of wild yeast and lactic acid bacteria rather than commercial "
            "yeast. The bacteria produce its sour flavour. Loaves rise for 4 to 12 hours and bake at "
            "roughly 230 degrees Celsius."
        ),
        "hallucinated": (
            "Sourdough uses a starter of wild yeast and lactic acid bacteria rather than commercial "
            "yeast. The recipe was invented in San Francisco during the Gold Rush of 1849. Loaves "
            "rise for 24 hours and bake at roughly 180 degrees Celsius."
        ),
    },
    {
        "context": (
            "The library's Python client retries failed requests three times with exponential "
            "backoff. Timeouts default to 30 seconds and can be changed with the timeout argument. "
            "The client does not retry requests that failed with a 4xx status code. Connection "
            "pooling is enabled by default."
        ),
        "faithful": (
            "Failed requests are retried three times with exponential backoff, except those that "
            "fail with a 4xx status. The default timeout is 30 seconds; pass the timeout argument to "
            "change it."
        ),
        "hallucinated": (
            "Failed requests are retried five times with a fixed delay, including those that fail "
            "with a 4xx status. The default timeout is 60 seconds and it cannot be changed."
        ),
    },
    {
        "context": (
            "The Greenway Trail is a 14-mile paved path that follows the old railway line between "
            "Millbrook and Carver Falls. It is open to walkers and cyclists from dawn to dusk. Dogs "
            "are allowed on a leash. Parking is available at the Millbrook trailhead."
        ),
        "faithful": (
            "The Greenway Trail is a paved 14-mile path along a former railway line from Millbrook "
            "to Carver Falls. Walkers and cyclists can use it from dawn to dusk, and leashed dogs "
            "are welcome."
        ),
        "hallucinated": (
            "The Greenway Trail is a paved 14-mile path along a former railway line from Millbrook "
            "to Carver Falls. It is open 24 hours a day to horses and motorbikes, and there is a "
            "visitor centre run by the National Park Service at Carver Falls."
        ),
    },
]


def test_generalisation_corpus_faithful_beats_hallucinated(scorer: OfflineFaithfulnessScorer) -> None:
    rows = []
    for item in GENERALISATION:
        rows.append({"context": item["context"], "answer": item["faithful"]})
        rows.append({"context": item["context"], "answer": item["hallucinated"]})
    results = scorer.score_batch(rows)
    labels = [1, 0] * len(GENERALISATION)
    scores = [r.score for r in results]
    for i in range(len(GENERALISATION)):
        assert scores[2 * i] > scores[2 * i + 1], (i, scores[2 * i], scores[2 * i + 1])
    assert auroc(labels, scores) >= 0.9
    # every faithful answer has several claims; hallucinated answers have at least one
    # claim that is not marked supported
    for i in range(len(GENERALISATION)):
        assert len(results[2 * i].claims) >= 2
        assert not all(c.supported for c in results[2 * i + 1].claims)


def test_unsupported_sentence_is_the_weakest_claim(scorer: OfflineFaithfulnessScorer) -> None:
    item = GENERALISATION[3]
    result = scorer.score(item["context"], item["hallucinated"])
    weakest = min(result.claims, key=lambda c: c.score)
    assert "Gold Rush" in weakest.text or "24 hours" in weakest.text
    first = result.claims[0]
    assert first.score > weakest.score
    assert "starter" in first.evidence


# --------------------------------------------------------------------------------- metrics


def _brute_force_auroc(labels: list[int], scores: list[float]) -> float:
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_matches_brute_force_with_ties() -> None:
    rng = random.Random(7)
    for trial in range(30):
        n = rng.randint(2, 60)
        labels = [rng.randint(0, 1) for _ in range(n)]
        labels[0], labels[1] = 0, 1
        # coarse scores -> many ties
        scores = [round(rng.random(), 1) for _ in range(n)]
        assert auroc(labels, scores) == pytest.approx(_brute_force_auroc(labels, scores), abs=1e-12), trial


def test_auroc_edge_cases() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ValueError):
        auroc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError):
        auroc([0, 1], [0.2])


def test_best_threshold_accuracy() -> None:
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.35, 0.4, 0.8, 0.9]
    t, acc = best_threshold_accuracy(labels, scores)
    assert acc == 1.0 and 0.35 < t <= 0.4
    # the returned threshold really achieves the returned accuracy
    rng = random.Random(3)
    labels = [rng.randint(0, 1) for _ in range(200)]
    scores = [rng.random() * 0.6 + 0.4 * y for y in labels]
    t, acc = best_threshold_accuracy(labels, scores)
    achieved = sum((s >= t) == bool(y) for s, y in zip(scores, labels)) / len(labels)
    assert achieved == pytest.approx(acc)
    brute = max(
        sum((s >= c) == bool(y) for s, y in zip(scores, labels)) / len(labels) for c in scores + [2.0]
    )
    assert acc == pytest.approx(brute)


# ------------------------------------------------------------------------------ real data


def test_halueval_first_400_rows_auroc(scorer: OfflineFaithfulnessScorer) -> None:
    rows = _load_halueval()[:400]
    labels = [int(r["label"]) for r in rows]
    assert 150 <= sum(labels) <= 250, "expected a roughly balanced slice"
    results = scorer.score_batch(rows)
    value = auroc(labels, [r.score for r in results])
    assert value >= 0.90, value


def _load_halueval() -> list[dict]:
    if not HALUEVAL.exists():
        pytest.skip(f"HaluEval dev data not found at {HALUEVAL} (shared/datasets is not checked out)")
    with HALUEVAL.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_hard_coded_weights_match_the_documented_calibration(scorer: OfflineFaithfulnessScorer) -> None:
    """Refit on the documented 20% split: the shipped coefficients must be that fit."""
    import numpy as np

    from ragkit.eval import faithfulness as fx

    rows = _load_halueval()
    items = sorted({r["id"].split("-")[0] for r in rows})
    perm = np.random.default_rng(0).permutation(len(items))
    fold0 = {items[j] for j in np.array_split(perm, 5)[0]}
    calib = [r for r in rows if r["id"].split("-")[0] in fold0]
    assert len(calib) == 400
    X, y = [], []
    for row, claims in zip(calib, scorer.features_batch(calib)):
        for _text, feats, _evidence in claims:
            X.append([feats[k] for k in fx.FEATURE_NAMES])
            y.append(int(row["label"]))
    intercept, weights = fx.fit_weights(np.array(X), np.array(y), l2=3.0)
    assert intercept == pytest.approx(fx._INTERCEPT, abs=0.05)
    for name in fx.FEATURE_NAMES:
        assert weights[name] == pytest.approx(fx._WEIGHTS[name], abs=0.05), name
        assert weights[name] >= 0.0
