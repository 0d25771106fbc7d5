"""Answer-quality metrics: SQuAD normalisation, EM, token F1, containment, context precision/recall."""

import pytest

from ragkit.eval.answers import (
    containment,
    context_precision,
    context_recall,
    exact_match,
    is_abstention,
    keyword_recall,
    normalize_answer,
    strip_citations,
    token_f1,
)
from ragkit.generation.prompt import NO_ANSWER


def test_normalisation_follows_squad():
    assert normalize_answer("The  Cassini Division!") == "cassini division"
    assert normalize_answer("An apple, a pear and THE end.") == "apple pear and end"
    assert normalize_answer("5,268 km") == "5268 km"
    assert normalize_answer("“Ganymede” — the largest") == "ganymede largest"
    # articles only as whole words: "Theia" and "another" keep their letters
    assert normalize_answer("Theia and another") == "theia and another"
    # citation markers are not part of an answer
    assert strip_citations("Launched in 1977 [1]. Reached Saturn [2, 3].") == "Launched in 1977. Reached Saturn."
    assert normalize_answer("Launched in 1977 [1].") == "launched in 1977"


def test_exact_match_takes_the_best_reference():
    assert exact_match("the Ganymede.", ["Callisto", "Ganymede"]) == 1.0
    assert exact_match("Ganymede is largest", ["Ganymede"]) == 0.0
    assert exact_match("anything", []) == 0.0
    with pytest.raises(TypeError):
        exact_match("Ganymede", "Ganymede")  # a bare string would be iterated letter by letter


def test_token_f1_values():
    # pred tokens: william herschel 1781 (3); ref: william herschel on 13 march 1781 (6); overlap 3
    assert token_f1("William Herschel, 1781", ["William Herschel, on 13 March 1781."]) == pytest.approx(
        2 * (3 / 3) * (3 / 6) / (3 / 3 + 3 / 6)
    )
    assert token_f1("Herschel", ["Galle", "Herschel"]) == 1.0
    assert token_f1("nothing shared", ["Herschel"]) == 0.0
    # repeated tokens count with multiplicity (SQuAD): "the" is dropped, "moon moon" vs "moon"
    assert token_f1("moon moon", ["moon"]) == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert token_f1("", [""]) == 1.0 and token_f1("", ["x"]) == 0.0


def test_containment_and_keywords():
    answer = "Voyager 1 was launched on 5 September 1977. [1]"
    assert containment(answer, ["5 September 1977"]) == 1.0
    assert containment(answer, ["September 5, 1977"]) == 0.0  # a run of tokens, in order
    assert containment(answer, ["197"]) == 0.0  # tokens, not substrings
    # a keyword set is contained only when every keyword is
    assert containment(answer, [["September", "1977"]]) == 1.0
    assert containment(answer, [["September", "1978"]]) == 0.0
    assert containment(answer, ["wrong answer", ["1977"]]) == 1.0  # best over references
    assert containment(answer, ["", "..."]) == 0.0  # empty references say nothing
    assert keyword_recall(answer, ["September", "1978", "Voyager 1"]) == pytest.approx(2 / 3)
    assert keyword_recall(answer, []) == 0.0


def test_abstention_is_the_no_answer_sentence():
    assert is_abstention(NO_ANSWER)
    assert is_abstention(NO_ANSWER.upper().rstrip(".") + " [1]")
    assert not is_abstention("I don't know, but probably 1977.")


def test_context_precision_and_recall_definitions():
    retrieved = ["a.md", "b.md", "a.md", "c.md", "a.md"]
    assert context_precision(retrieved, ["a.md"]) == pytest.approx(3 / 5)
    assert context_precision(retrieved, ["a.md"], k=2) == pytest.approx(1 / 2)
    assert context_precision(retrieved, ["a.md", "c.md"], k=4) == pytest.approx(3 / 4)
    assert context_precision(["a.md"], ["a.md"], k=5) == 1.0  # a short list is not penalised
    assert context_precision([], ["a.md"]) == 0.0
    assert context_recall(retrieved, ["a.md", "z.md"]) == pytest.approx(1 / 2)
    assert context_recall(retrieved, ["c.md"], k=3) == 0.0
    assert context_recall(retrieved, ["c.md"], k=4) == 1.0
    with pytest.raises(ValueError, match="no expected source"):
        context_recall(retrieved, [])
    with pytest.raises(ValueError):
        context_precision(retrieved, ["a.md"], k=0)
