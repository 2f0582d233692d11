"""A run scoring its samples in groups (likelihood on every sample, answers on those with a prompt) counts
samples of the dataset: it never reports more done than its total ("496 / 278")."""

from types import SimpleNamespace

import numpy as np

from evals.scoring import cache
from evals.scoring.cache import ScoredSamples, ScorerValues
from evals.services import engine

SAMPLES = 278
PROMPTED = 109


def test_it_never_counts_more_samples_than_the_dataset_holds(monkeypatch):
    def score_samples(facts, chosen, store, config, *, scorers, progress):
        for done in range(1, len(chosen) + 1):
            progress(done)
        indices = np.arange(len(chosen))
        results = {name: ScorerValues(None, indices, {}) for name in scorers}
        return ScoredSamples(results, len(chosen), 0, 0, 0, 0.0)

    monkeypatch.setattr(engine, "score_samples", score_samples)
    reported: list[int] = []
    samples = [{"id": str(n)} for n in range(SAMPLES)]
    groups = [
        (np.arange(SAMPLES), ["causal-nll"]),
        (np.arange(PROMPTED), ["answer-checks", "answer-similarity"]),
    ]

    engine._score_groups(None, samples, groups, None, reported.append)

    assert max(reported) == reported[-1] == SAMPLES
    assert reported == sorted(reported)


def test_it_counts_a_scoring_runs_samples_once_whatever_the_number_of_scorers(monkeypatch):
    """Likelihood on all 278 samples, two answer scorers on the 109 with a prompt: 278 / 278 at the end."""
    prompted = {"answer-checks", "answer-similarity"}

    def applicable(scorer, samples):
        return np.arange(PROMPTED if scorer.name in prompted else len(samples))

    def score_one(lm, scorer, chosen, indices, store, config, cost, progress):
        for done in range(1, len(chosen) + 1):
            progress(done)
        return ScorerValues(scorer, indices, {})

    monkeypatch.setattr(cache, "applicable", applicable)
    monkeypatch.setattr(cache, "_score_one", score_one)
    scorers = [SimpleNamespace(name=name, metrics=()) for name in ("causal-nll", *sorted(prompted))]
    reported: list[int] = []

    cache.score_samples(None, [{"id": str(n)} for n in range(SAMPLES)], None, scorers=scorers, progress=reported.append)

    assert max(reported) == reported[-1] == SAMPLES
    assert reported == sorted(reported)
