"""The verdict on a pairwise judge: is the candidate's mean preference over the baseline below −limit?

Per-sample preferences (+1 candidate better, −1 baseline better, 0 tie, or a mean of repeats) are
already paired by construction, so the statistic is one-sample: their mean, with a percentile
bootstrap interval. Red when the whole interval lies below −limit under a block threshold; amber
when the mean is below −limit but the interval straddles it (or under a warn threshold); green
otherwise. Judge errors (NaN) are excluded and counted. `preference_comparison` puts the statistic
in the form the threshold rules read, for the verdict on a one-sample metric such as `judge_preference`.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from evals.scoring.drift import CategoryDelta, Comparison, Outcome, Severity
from evals.scoring.metrics import MetricSpec

# Per-sample preferences lie in [−1, 1] (σ ≤ 1), so at n = 500 a drop of 2 × 0.2 is caught ≥ 95 % of the
# time by any judge, however noisy (bench/judge.py); a smaller limit needs more samples.
DEFAULT_PREFERENCE_LIMIT = 0.2
_BLOCK_ROWS = 256


@dataclass(frozen=True)
class Preference:
    delta: float
    ci_low: float
    ci_high: float
    samples: int
    errors: int
    confidence: float

    def as_dict(self, outcome: Outcome) -> dict[str, object]:
        return {
            "delta": self.delta,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "outcome": outcome,
            "samples": self.samples,
            "errors": self.errors,
        }


def preference_interval(
    preferences: np.ndarray, *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Preference:
    """Mean preference and its percentile bootstrap interval over the valid (non-NaN) samples."""
    values = np.asarray(preferences, dtype=np.float64)
    valid = values[~np.isnan(values)]
    errors = int(len(values) - len(valid))
    if len(valid) == 0:
        raise ValueError("no judged sample to compute a preference from")
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            valid[rng.integers(0, len(valid), size=(min(_BLOCK_ROWS, n_boot - start), len(valid)))].mean(axis=1)
            for start in range(0, n_boot, _BLOCK_ROWS)
        ]
    )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Preference(float(valid.mean()), float(low), float(high), len(valid), errors, confidence)


def preference_outcome(preference: Preference, limit: float, severity: Severity = "block") -> Outcome:
    if preference.delta >= -limit:
        return "green"
    return "red" if severity == "block" and preference.ci_high < -limit else "amber"


def preference_reason(preference: Preference, limit: float) -> str:
    percent = 100 * preference.confidence
    return (
        f"judge preference {preference.delta:+.3f} ({percent:g} % CI {preference.ci_low:+.3f} – "
        f"{preference.ci_high:+.3f}, {preference.samples} samples, {preference.errors} judge errors) "
        f"against a limit of −{limit:g}"
    )


def preference_comparison(
    spec: MetricSpec,
    preferences: np.ndarray,
    *,
    categories: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[Comparison, Preference]:
    """A one-sample metric's values (NaN for a judge error) as a comparison with its baseline, for the
    threshold rules: the mean is both the candidate value and the delta (0 is no change), the
    bootstrap interval both intervals, the p-value a one-sample t-test against 0. Relative and
    absolute limits then read as limits on the mean preference; there is no band, no baseline value
    and no distribution shift."""
    preference = preference_interval(preferences, n_boot=n_boot, seed=seed, confidence=confidence)
    values = np.asarray(preferences, dtype=np.float64)
    valid = ~np.isnan(values)
    comparison = Comparison(
        spec=spec,
        n=preference.samples,
        confidence=confidence,
        candidate=preference.delta,
        baseline=0.0,
        delta=preference.delta,
        ci_low=preference.ci_low,
        ci_high=preference.ci_high,
        cand_ci_low=preference.ci_low,
        cand_ci_high=preference.ci_high,
        p_value=_p_value(values[valid]),
        band=None,
        band_low=None,
        band_high=None,
        band_position=None,
        ks=None,
        wasserstein=None,
        per_category=_per_category(values[valid], None if categories is None else np.asarray(categories)[valid]),
    )
    return comparison, preference


def _p_value(values: np.ndarray) -> float:
    mean = float(values.mean())
    if len(values) < 2 or float(values.std(ddof=1)) == 0.0:
        return 1.0 if mean == 0 else 0.0
    return float(stats.ttest_1samp(values, 0.0).pvalue)


def _per_category(values: np.ndarray, categories: np.ndarray | None) -> dict[str, CategoryDelta]:
    if categories is None:
        return {}
    result = {}
    for label in sorted(set(categories.tolist())):
        mean = float(values[categories == label].mean())
        result[str(label)] = CategoryDelta(candidate=mean, baseline=0.0, delta=mean, n=int((categories == label).sum()))
    return result
