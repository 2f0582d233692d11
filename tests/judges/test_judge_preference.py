"""The pairwise preference statistic against known truth: the bootstrap interval of the mean matches
scipy's t interval and covers the true preference about 95 % of the time; the outcome rules."""

import numpy as np
import pytest
from scipy import stats

from evals.scoring.judges.preference import Preference, preference_interval, preference_outcome


def test_the_interval_matches_scipys_t_interval():
    rng = np.random.default_rng(1)
    values = rng.choice([-1.0, 0.0, 1.0], p=[0.4, 0.35, 0.25], size=500)
    preference = preference_interval(values, n_boot=4000)
    low, high = stats.t.interval(0.95, df=len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert preference.delta == pytest.approx(values.mean())
    assert preference.ci_low == pytest.approx(low, abs=0.01) and preference.ci_high == pytest.approx(high, abs=0.01)


def test_the_interval_covers_the_true_preference():
    rng = np.random.default_rng(2)
    probabilities = [0.3, 0.45, 0.25]
    truth = -0.3 + 0.25
    covered = [
        p.ci_low <= truth <= p.ci_high
        for p in (
            preference_interval(rng.choice([-1.0, 0.0, 1.0], p=probabilities, size=300), n_boot=1000, seed=seed)
            for seed in range(300)
        )
    ]
    assert 0.91 <= np.mean(covered) <= 0.98


def test_judge_errors_are_excluded_and_counted():
    preference = preference_interval(np.array([1.0, np.nan, -1.0, 0.0, np.nan]))
    assert (preference.samples, preference.errors, preference.delta) == (3, 2, 0.0)
    with pytest.raises(ValueError, match="no judged sample"):
        preference_interval(np.array([np.nan]))


@pytest.mark.parametrize(
    "delta, ci_high, severity, outcome",
    [
        (-0.05, 0.0, "block", "green"),
        (-0.15, -0.05, "block", "amber"),
        (-0.3, -0.2, "block", "red"),
        (-0.3, -0.2, "warn", "amber"),
        (0.4, 0.5, "block", "green"),
    ],
)
def test_red_only_when_the_whole_interval_lies_below_minus_the_limit(delta, ci_high, severity, outcome):
    preference = Preference(delta=delta, ci_low=delta - 0.1, ci_high=ci_high, samples=100, errors=0, confidence=0.95)
    assert preference_outcome(preference, limit=0.1, severity=severity) == outcome
    assert preference.as_dict(outcome)["outcome"] == outcome
