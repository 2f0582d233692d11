"""The verdict on a pairwise judge: is the candidate's mean preference over the baseline below −limit?

Per-sample preferences (+1 candidate better, −1 baseline better, 0 tie, or a mean of repeats) are
already paired by construction, so the statistic is one-sample: their mean, with a percentile
bootstrap interval. Red when the whole interval lies below −limit under a block threshold; amber
when the mean is below −limit but the interval straddles it (or under a warn threshold); green
otherwise. Judge errors (NaN) are excluded and counted.
"""

from dataclasses import dataclass

import numpy as np

from evals.scoring.drift import Outcome, Severity

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
