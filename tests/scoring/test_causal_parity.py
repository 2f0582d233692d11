"""The causal scorer against lm-evaluation-harness, in the same process on the same model."""

import math

import numpy as np
import pytest
from lm_eval.api.metrics import bits_per_byte, weighted_perplexity

from evals.scoring.causal import score_causal
from tests.scoring.lm_eval_reference import lm_eval_nll

RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def harness_nll(tiny_gpt2_dir, texts):
    return lm_eval_nll(tiny_gpt2_dir, texts)


@pytest.fixture(scope="module")
def scores(tiny_lm, texts):
    return score_causal(tiny_lm, texts)


def test_it_covers_texts_of_one_token_to_several_windows(scores, tiny_lm):
    assert scores.tokens.min() == 1
    assert scores.tokens.max() > 3 * tiny_lm.max_length


def test_it_matches_the_harness_per_sample(scores, harness_nll):
    np.testing.assert_allclose(scores.nll, harness_nll, rtol=RELATIVE_TOLERANCE)


def test_it_matches_the_harness_with_a_shorter_context(tiny_lm, tiny_gpt2_dir, texts):
    short = 13
    ours = score_causal(tiny_lm, texts, max_length=short)
    np.testing.assert_allclose(ours.nll, lm_eval_nll(tiny_gpt2_dir, texts, max_length=short), rtol=RELATIVE_TOLERANCE)


def test_it_counts_tokens_and_utf8_bytes(scores, tiny_lm, texts):
    expected_tokens = [len(tiny_lm.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    assert scores.tokens.tolist() == expected_tokens
    assert scores.bytes.tolist() == [len(text.encode("utf-8")) for text in texts]
    assert scores.tokens_scored == sum(expected_tokens)


def test_it_aggregates_like_the_harness(scores, harness_nll):
    by_bytes = list(zip(-harness_nll, scores.bytes, strict=True))
    by_tokens = list(zip(-harness_nll, scores.tokens, strict=True))
    assert math.isclose(scores.bits_per_byte, bits_per_byte(by_bytes), rel_tol=RELATIVE_TOLERANCE)
    assert math.isclose(scores.perplexity, weighted_perplexity(by_tokens), rel_tol=RELATIVE_TOLERANCE)


def test_it_gives_an_empty_text_no_tokens_and_no_loss(tiny_lm):
    scores = score_causal(tiny_lm, ["", "x"])
    assert scores.tokens.tolist()[0] == 0
    assert scores.nll[0] == 0.0
    assert scores.nll[1] > 0.0
