import dataclasses

import numpy as np
import pytest

from evals.scoring.cache import InMemoryResultStore, SampleResult, ScoringConfig, fingerprint, score_samples
from evals.scoring.causal import score_causal
from evals.scoring.scorers import SCORERS

CAUSAL_NLL = SCORERS["causal-nll"]


def nll(scored) -> np.ndarray:
    return scored.values("causal-nll")["nll"]


@pytest.fixture(scope="module")
def samples(texts):
    return [{"id": str(index), "text": text, "reference": None} for index, text in enumerate(texts * 2)][:60]


def test_it_runs_no_forward_pass_when_the_same_weights_come_again(tiny_lm, samples):
    store = InMemoryResultStore()
    first = score_samples(tiny_lm, samples, store)
    second = score_samples(tiny_lm, samples, store)
    assert first.forward_passes > 0
    assert second.forward_passes == 0
    assert second.samples_reused == len(samples)
    np.testing.assert_array_equal(nll(second), nll(first))


def test_it_scores_only_the_samples_it_has_not_seen(tiny_lm, texts):
    samples = [{"text": text} for text in texts]
    known, new = samples[:-4], samples[-4:]
    store = InMemoryResultStore()
    score_samples(tiny_lm, known, store)
    scored = score_samples(tiny_lm, samples, store)
    assert (scored.samples_computed, scored.samples_reused) == (len(new), len(known))
    assert scored.tokens_scored == score_causal(tiny_lm, [s["text"] for s in new]).tokens_scored
    np.testing.assert_allclose(nll(scored), score_causal(tiny_lm, texts).nll, rtol=1e-5)


def test_it_scores_a_repeated_text_once(tiny_lm):
    scored = score_samples(tiny_lm, [{"text": "same"}, {"text": "same"}, {"text": "other"}], InMemoryResultStore())
    assert scored.tokens_scored == score_causal(tiny_lm, ["same", "other"]).tokens_scored
    assert nll(scored)[0] == nll(scored)[1]


def test_it_does_not_reuse_results_of_other_weights_or_settings(tiny_lm, samples):
    store = InMemoryResultStore()
    score_samples(tiny_lm, samples, store)
    other_weights = dataclasses.replace(tiny_lm, weights_sha256="0" * 64)
    assert score_samples(other_weights, samples, store).samples_reused == 0
    shorter = score_samples(tiny_lm, samples, store, ScoringConfig(max_length=16))
    assert shorter.samples_reused == 0
    assert score_samples(tiny_lm, samples, store, ScoringConfig(token_budget=128)).samples_reused == len(samples)


def test_it_aggregates_over_a_subset(tiny_lm, samples):
    scored = score_samples(tiny_lm, samples, InMemoryResultStore())
    mask = np.arange(len(samples)) % 2 == 0
    values = scored.values("causal-nll")
    expected = values["nll"][mask].sum() / (np.log(2) * values["bytes"][mask].sum())
    assert scored.aggregate("bits_per_byte", mask) == pytest.approx(expected)


def test_it_round_trips_a_result_through_a_dict():
    result = SampleResult({"nll": 12.5, "tokens": 4, "bytes": 17})
    assert SampleResult.from_dict(result.to_dict()) == result


def test_it_fingerprints_what_a_score_depends_on(tiny_lm):
    facts = fingerprint(tiny_lm, CAUSAL_NLL, ScoringConfig(max_length=32), dataset_sha256="d" * 64)
    assert facts["max_length"] == 32
    assert facts["scorer_version"] == "causal-nll@1"
    assert facts["tokenizer_hash"] == tiny_lm.tokenizer_hash
    assert {"torch", "transformers", "dtype", "weights_sha256", "dataset_sha256"} <= facts.keys()


def test_a_likelihood_result_outlives_a_prompt_or_reference_added_beside_the_text(tiny_lm, samples):
    store = InMemoryResultStore()
    first = score_samples(tiny_lm, samples[:10], store)
    grown = [{**sample, "prompt": "Go on:", "reference": "and so on"} for sample in samples[:10]]
    again = score_samples(tiny_lm, grown, store)
    assert again.samples_reused == 10 and again.forward_passes == 0
    np.testing.assert_array_equal(nll(again), nll(first))
    edited = [{**sample, "text": sample["text"] + " more"} for sample in samples[:10]]
    assert score_samples(tiny_lm, edited, store).samples_reused == 0


def test_a_scorer_that_applies_to_no_sample_yields_no_metric(tiny_lm, samples):
    texts = [{"text": sample["text"]} for sample in samples[:5]]
    scored = score_samples(
        tiny_lm, texts, InMemoryResultStore(), ScoringConfig(scorers=("causal-nll", "answer-checks"))
    )
    assert set(scored.metrics) == {spec.name for spec in CAUSAL_NLL.metrics}
    assert len(nll(scored)) == 5
