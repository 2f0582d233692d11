"""Scorers are plug-ins: one class, one registration, and the engine, the metric table, the verdicts and the
family settings all follow from its declaration."""

import dataclasses

import numpy as np
import pytest

from evals.scoring import drift
from evals.scoring.cache import InMemoryResultStore, ScoringConfig, score_samples
from evals.scoring.errors import ScoringError
from evals.scoring.loading import CAUSAL_LM
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers import DEFAULT_SCORERS, METRICS, SCORERS, Scorer, ScorerOutput, register, scorers_for


@pytest.fixture
def text_length_scorer():
    """A scorer written the way the README says: one `Scorer` class with `@register`."""

    @register()
    class TextLength(Scorer):
        name = "text-length"
        version = 1
        model_kinds = frozenset({CAUSAL_LM})
        fields = ("text",)
        skips_incomplete = True
        metrics = (MetricSpec("characters_per_sample", "lower", numerator="characters"),)
        calls: list[int] = []

        def score(self, lm, samples, *, max_length, token_budget, progress):
            self.calls.append(len(samples))
            return ScorerOutput([{"characters": len(s["text"])} for s in samples], forward_passes=0, tokens_scored=0)

    yield SCORERS["text-length"]
    del SCORERS["text-length"], METRICS["characters_per_sample"]


def test_the_built_in_scorers_declare_their_metrics():
    assert DEFAULT_SCORERS["causal-lm"] == ("causal-nll",) and DEFAULT_SCORERS["embedding"] == ("cosine-similarity",)
    assert {spec.name for spec in SCORERS["causal-nll"].metrics} == {"bits_per_byte", "perplexity"}
    assert METRICS["bits_per_byte"].tokenizer_free and not METRICS["perplexity"].tokenizer_free
    assert METRICS["similarity"].unit_range == (-1.0, 1.0) and METRICS["similarity"].direction == "higher"


def test_a_registered_scorer_runs_beside_the_defaults_with_its_results_cached(tiny_lm, texts, text_length_scorer):
    samples = [{"text": text} for text in texts[:10]] + [{"prompt": "no text here"}]
    config = ScoringConfig(scorers=("causal-nll", "text-length"), chunk_samples=4)
    store = InMemoryResultStore()

    first = score_samples(tiny_lm, samples, store, config)
    again = score_samples(tiny_lm, samples, store, config)

    assert set(first.metrics) == {"bits_per_byte", "perplexity", "characters_per_sample"}
    indices, numerators, denominators = first.arrays("characters_per_sample")
    assert indices.tolist() == list(range(10))  # the prompt-only sample has no text to read
    assert numerators.tolist() == [len(t) for t in texts[:10]] and denominators.tolist() == [1.0] * 10
    assert text_length_scorer.calls == [4, 4, 2]  # computed and stored chunk by chunk, then never again
    # Counted in samples, not in scorer results: the 10 texts, each found stored by both scorers.
    assert again.samples_reused == 10 and again.forward_passes == 0


def test_a_sample_counts_as_reused_only_when_every_scorer_found_it_stored(tiny_lm, texts, text_length_scorer):
    samples = [{"text": text} for text in texts[:10]]
    store = InMemoryResultStore()
    score_samples(tiny_lm, samples, store, ScoringConfig(scorers=("causal-nll",)))

    both = score_samples(tiny_lm, samples, store, ScoringConfig(scorers=("causal-nll", "text-length")))

    assert (both.samples_reused, both.samples_computed, both.forward_passes) == (0, 10, 0)


def test_a_verdict_compares_a_plug_in_metric_from_its_spec_alone(text_length_scorer):
    spec = METRICS["characters_per_sample"]
    baseline = np.full(50, 100.0)
    comparison = drift.compare(spec, baseline * 1.3, np.ones(50), baseline, np.ones(50), n_boot=200)
    assert comparison.delta == pytest.approx(-0.3)  # lower is better: 30 % longer is 30 % worse


def test_a_family_names_the_scorers_it_runs_and_unknown_ones_are_refused(staff_client, tiny_gpt2_dir):
    good = {"slug": "two-scorers", "kind": "causal-lm", "base_path": str(tiny_gpt2_dir), "scorers": ["causal-nll"]}
    assert staff_client.post("/api/v1/families/", good, format="json").status_code == 201

    response = staff_client.post("/api/v1/families/", {**good, "slug": "typo", "scorers": ["causal-nl"]}, format="json")
    assert response.status_code == 400 and "unknown scorer" in response.json()["scorers"][0]

    wrong_kind = {**good, "slug": "wrong-kind", "scorers": ["cosine-similarity"]}
    response = staff_client.post("/api/v1/families/", wrong_kind, format="json")
    assert response.status_code == 400 and "do not run on causal-lm" in response.json()["scorers"][0]


def test_choosing_no_scorer_for_a_kind_without_defaults_is_a_clear_error():
    with pytest.raises(ScoringError, match="no scorer for"):
        scorers_for("speech")


def test_a_scorer_cannot_take_another_s_name_or_metric(text_length_scorer):
    with pytest.raises(ValueError, match="registered twice"):
        register()(type(text_length_scorer))

    class Clashing(Scorer):
        name, version, model_kinds, fields, skips_incomplete = "clash", 1, frozenset({CAUSAL_LM}), ("text",), True
        metrics = (dataclasses.replace(METRICS["bits_per_byte"]),)

    with pytest.raises(ValueError, match="redefines metrics"):
        register()(Clashing)
