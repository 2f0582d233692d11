"""Absolute deltas: a count whose baseline is 0 gets a real comparison (not `incomparable`), its
interval and p-value agree with the paired t-test of scipy on the same differences, its coverage
holds in simulation, and a relative limit on it is read in the metric's own units."""

import math

import numpy as np
import pytest
from scipy import stats

from evals.scoring import drift
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers import METRICS

FLAGGED = MetricSpec("flagged_words", "lower", numerator="flagged", unit_range=(0.0, math.inf), delta="absolute")
EXACT = MetricSpec("exact", "higher", numerator="exact", unit_range=(0.0, 1.0))


def compare(spec: MetricSpec, candidate: np.ndarray, baseline: np.ndarray, **kwargs) -> drift.Comparison:
    ones = np.ones_like(candidate, dtype=float)
    return drift.compare(spec, candidate, ones, baseline, ones, **kwargs)


def test_it_compares_a_count_whose_baseline_is_0():
    rng = np.random.default_rng(1)
    candidate = rng.poisson(0.8, size=200).astype(float)
    comparison = compare(FLAGGED, candidate, np.zeros(200))

    assert comparison.baseline == 0.0
    assert comparison.delta == pytest.approx(-candidate.mean())  # lower is better: more flagged words is worse
    assert comparison.ci_low < comparison.delta < comparison.ci_high < 0


def test_a_relative_delta_stays_undefined_on_a_baseline_of_0():
    with pytest.raises(drift.UndefinedRelativeDelta):
        compare(EXACT, np.ones(20), np.zeros(20))


def test_its_p_value_and_interval_agree_with_scipy_paired_t_test():
    rng = np.random.default_rng(7)
    baseline = rng.poisson(0.5, size=300).astype(float)
    candidate = baseline + rng.poisson(0.2, size=300)
    comparison = compare(FLAGGED, candidate, baseline, n_boot=4000)

    expected = stats.ttest_rel(candidate, baseline)
    assert comparison.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    low, high = expected.confidence_interval(0.95)
    # The bootstrap percentile interval of −(mean difference) against the t interval of the mean difference.
    assert comparison.ci_low == pytest.approx(-high, abs=0.03)
    assert comparison.ci_high == pytest.approx(-low, abs=0.03)


def test_its_interval_covers_the_true_change_at_the_stated_rate():
    rng = np.random.default_rng(11)
    true_change = -0.3  # the candidate says 0.3 more flagged words per answer on average
    covered = 0
    trials = 200
    for seed in range(trials):
        baseline = rng.poisson(0.4, size=120).astype(float)
        candidate = baseline + rng.poisson(0.3, size=120)
        comparison = compare(FLAGGED, candidate, baseline, n_boot=500, seed=seed)
        covered += comparison.ci_low <= true_change <= comparison.ci_high
    assert 0.90 <= covered / trials <= 0.99


def test_a_relative_limit_is_read_in_the_metric_units():
    candidate = np.array([1.0, 1.0, 2.0, 1.0] * 25)
    comparison = compare(FLAGGED, candidate, np.zeros(100))
    limit = drift.ThresholdSpec(id=1, version=1, metric="flagged_words", rule="relative", limit=0.5, severity="block")

    verdict = drift.classify(comparison, [limit])

    assert verdict.outcome == "red"
    assert verdict.reasons[0].startswith("flagged words worse by 1.25 (95 % CI")
    assert "beyond the 0.5 block limit" in verdict.reasons[0]
    lenient = drift.classify(comparison, [limit.__class__(**{**limit.__dict__, "limit": 2.0})])
    assert lenient.outcome == "green"


def test_a_spec_refuses_an_unknown_delta():
    with pytest.raises(ValueError, match="delta must be"):
        MetricSpec("x", "lower", numerator="x", delta="percent")


def test_the_answer_checks_shares_compare_0_with_0_as_no_change():
    for name in ("exact_match", "contains_reference"):
        spec = METRICS[name]
        comparison = compare(spec, np.zeros(50), np.zeros(50))
        assert (spec.delta, spec.binary, comparison.delta, comparison.ci_low, comparison.ci_high) == (
            "absolute",
            True,
            0.0,
            0.0,
            0.0,
        )
