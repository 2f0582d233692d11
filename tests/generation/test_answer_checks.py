"""Answer checks: the documented normalisation, exact / contained / regex checks, and similarity on
the packaged MiniLM embedder."""

import numpy as np
import pytest

from evals.scoring.answers import (
    answer_similarity,
    compile_regex,
    contains_reference,
    exact_match,
    normalize_answer,
    regex_match,
)
from evals.scoring.errors import SampleError, ScoringError


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Answer: 42.", "answer 42"),
        ("  an   apple\tand\na pear ", "apple and pear"),
        ("Theory of «sets»!", "theory of sets"),
        ("ＦＵＬＬ width", "full width"),
        ("Straße", "strasse"),
        ("don't", "dont"),
        ("", ""),
    ],
)
def test_it_normalises_like_squad_extended_to_unicode(text, normalised):
    assert normalize_answer(text) == normalised


def test_it_checks_exact_answers_after_normalisation():
    answers = ["The answer is 42.", "42!", "forty-two", ""]
    assert exact_match(answers, ["42"] * 4).tolist() == [0, 1, 0, 0]


def test_it_finds_the_reference_as_whole_words():
    answers = ["It is 42, I think.", "It is 420.", "The capital is Paris", "a -> b", "nothing"]
    references = ["42", "42", "the Capital", "->", "thing"]
    assert contains_reference(answers, references).tolist() == [1, 0, 1, 1, 0]


def test_it_matches_a_family_regex_on_the_raw_answer():
    assert regex_match(["Rating: [[7]]", "Rating: 7", "[[10]]"], r"\[\[\d+\]\]").tolist() == [1, 0, 1]
    with pytest.raises(ScoringError, match="invalid regex"):
        compile_regex("([")


def test_it_requires_a_reference_for_each_answer():
    with pytest.raises(SampleError, match="first at position 1"):
        exact_match(["a", "b"], ["a", None])
    with pytest.raises(SampleError):
        contains_reference(["a"], [""])


def test_it_scores_a_paraphrase_above_an_unrelated_answer(minilm):
    references = [
        "Use the reset link on the sign-in page to choose a new password.",
        "The function returns the number of items in the list.",
        "Python raises a KeyError when the key is missing.",
    ]
    paraphrases = [
        "Click 'forgot password' when signing in and pick a new one.",
        "It gives back how many elements the list holds.",
        "A missing key makes Python throw KeyError.",
    ]
    unrelated = ["The weather in Lisbon is sunny today.", "Bananas are rich in potassium.", "She plays the cello."]
    similar = answer_similarity(minilm, paraphrases, references)
    different = answer_similarity(minilm, unrelated, references)
    assert (similar > different).all()
    assert similar.min() > 0.4 > different.max()
    assert answer_similarity(minilm, references, references) == pytest.approx(np.ones(3), abs=1e-6)


def test_it_embeds_an_empty_answer(minilm):
    score = answer_similarity(minilm, [""], ["Some reference."])
    assert np.isfinite(score).all() and -1 <= score[0] < 0.5
