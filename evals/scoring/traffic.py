"""Traffic drift: the production model's per-sample values on a window of live traffic against a
reference (its golden set, or a chosen earlier window), and golden subsets drawn from query logs.

The two samples are independent, so every statistic here is UNPAIRED:

- the shift of the mean per-sample value, with a bootstrap interval that resamples each side on
  its own and Welch's t-test, in units of the reference's σ;
- Kolmogorov–Smirnov (two-sample) and the Wasserstein distance over the reference's σ, Evidently's
  anchors (KS for small samples, Wasserstein/σ ≥ 0.1 for large ones);
- the category mix: population stability index and a χ² test of homogeneity, new categories;
- for embedding families, the distance between the mean embeddings with a permutation p-value.

The first two watch the model's own signal, so they alarm only when the model does worse on the
window (its metric's direction; the one-sided KS test for the distribution): traffic the model
finds easier than its golden set is noted in the reasons, not alarmed on. The others are
direction-free.

A check fires only when the shift is both statistically clear (p below α of its severity) and
large enough to matter (the effect above the threshold's limit). The test alone alarms more and
more often as windows grow, on shifts too small to matter (what Evidently users report); the effect
alone alarms on noise in small windows. Pure numpy / scipy, no Django.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

from evals.scoring.summary import resample_indices

Severity = Literal["warn", "block"]
Outcome = Literal["green", "amber", "red", "incomparable"]

# α per severity: each check is a test at this level, gated by its effect size as well.
ALPHA: dict[str, float] = {"block": 0.001, "warn": 0.01}
TRAFFIC_METRICS = ("mean_shift", "wasserstein", "psi", "new_categories", "embedding_shift")
PSI_EPSILON = 1e-4  # Evidently's floor for an empty bin
MIN_WINDOW = 20
MIN_NEW_CATEGORY_SAMPLES = 3
UNCATEGORISED = ""
_BOOTSTRAP_BLOCK_CELLS = 200_000
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class TrafficSpec:
    """One traffic threshold: the check fires when the effect reaches `limit` at α of `severity`.

    mean_shift: |Δ mean| / σ_ref; wasserstein: W / σ_ref (with KS); psi: PSI (with χ²);
    new_categories: share of the window in categories the reference never saw; embedding_shift:
    distance of the mean embeddings over the reference's spread (with a permutation test).
    """

    metric: str
    limit: float
    severity: Severity
    id: int | str = "default"
    version: int | None = None


DEFAULT_SPECS: tuple[TrafficSpec, ...] = (
    # Amber is the same effect on weaker evidence: a lower effect limit would turn amber more and more
    # often as windows grow, on shifts too small to matter.
    TrafficSpec("mean_shift", 0.1, "block"),
    TrafficSpec("mean_shift", 0.1, "warn"),
    TrafficSpec("wasserstein", 0.1, "block"),
    TrafficSpec("wasserstein", 0.1, "warn"),
    # Below the 0.25 "major shift" of the PSI convention: a window's PSI is estimated from two samples, and a
    # limit at the effect to be caught would miss half of such windows.
    TrafficSpec("psi", 0.15, "block"),
    TrafficSpec("psi", 0.1, "warn"),
    TrafficSpec("new_categories", 0.02, "block"),
    TrafficSpec("new_categories", 0.005, "warn"),
    TrafficSpec("embedding_shift", 0.2, "block"),
    TrafficSpec("embedding_shift", 0.1, "warn"),
)


@dataclass(frozen=True)
class CategoryShare:
    category: str
    reference_share: float
    window_share: float
    window_count: int
    psi_term: float
    new: bool


@dataclass(frozen=True)
class TrafficComparison:
    n: int
    n_reference: int
    confidence: float
    mean: float
    mean_ci_low: float
    mean_ci_high: float
    reference_mean: float
    reference_std: float
    shift: float
    shift_ci_low: float
    shift_ci_high: float
    shift_sigma: float
    worse_sigma: float
    shift_p_value: float
    band_low: float
    band_high: float
    ks: float
    ks_p_value: float
    ks_worse_p_value: float
    wasserstein: float
    wasserstein_sigma: float
    psi: float | None = None
    chi2: float | None = None
    chi2_p_value: float | None = None
    new_categories: list[str] = field(default_factory=list)
    new_category_share: float = 0.0
    new_category_count: int = 0
    categories: list[CategoryShare] = field(default_factory=list)
    embedding_shift: float | None = None
    embedding_p_value: float | None = None


@dataclass(frozen=True)
class TrafficVerdict:
    outcome: Outcome
    reasons: list[str]
    fired: list[TrafficSpec]


# Windows


def parse_duration(text: str) -> int:
    """Seconds of '30m', '6h', '1d', '1w'."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"not a window length: {text!r} (use e.g. 1h, 6h, 1d, 7d, 1w)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def window_starts(epoch_seconds: Sequence[float], width_seconds: int) -> np.ndarray:
    """The start (epoch seconds, UTC-aligned multiple of the width) of each row's window."""
    seconds = np.asarray(epoch_seconds, dtype=np.float64)
    return (np.floor(seconds / width_seconds) * width_seconds).astype(np.int64)


# Statistics


def compare_traffic(
    reference: Sequence[float] | np.ndarray,
    window: Sequence[float] | np.ndarray,
    *,
    reference_categories: Sequence[str] | None = None,
    window_categories: Sequence[str] | None = None,
    direction: Literal["lower", "higher"] = "lower",
    block_limit: float = 0.1,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> TrafficComparison:
    """Every unpaired statistic of a window's per-sample values against the reference's.

    `direction` says which way is better for the metric (lower for bits per byte); `worse_sigma` is
    the mean shift in σ signed so that positive is worse, `ks_worse_p_value` the one-sided KS test that
    the window's values are worse somewhere in their distribution.
    `block_limit` (in σ) widens the reference band drawn on the charts to the mean shift that
    could turn the window red.
    """
    ref, win = _finite(reference, "reference"), _finite(window, "window")
    sigma = float(ref.std(ddof=1))
    shift = float(win.mean() - ref.mean())
    win_means, shift_draws = _unpaired_bootstrap(ref, win, n_boot, seed)
    tail = (1 - confidence) / 2
    ks = stats.ks_2samp(ref, win)
    # "greater": the reference's CDF lies above the window's somewhere, i.e. the window's values are larger.
    # The asymptotic p-value: scipy's exact one-sided computation takes seconds for thousands of samples.
    ks_worse = stats.ks_2samp(ref, win, alternative="greater" if direction == "lower" else "less", method="asymp")
    shift_sigma = shift / sigma if sigma > 0 else 0.0
    wasserstein = float(stats.wasserstein_distance(ref, win))
    standard_error = math.sqrt(ref.var(ddof=1) / len(ref) + win.var(ddof=1) / len(win))
    half_band = max(stats.norm.isf(ALPHA["block"] / 2) * standard_error, block_limit * sigma)
    mix = category_mix(reference_categories, window_categories) if reference_categories is not None else {}
    return TrafficComparison(
        n=len(win),
        n_reference=len(ref),
        confidence=confidence,
        mean=float(win.mean()),
        mean_ci_low=float(np.quantile(win_means, tail)),
        mean_ci_high=float(np.quantile(win_means, 1 - tail)),
        reference_mean=float(ref.mean()),
        reference_std=sigma,
        shift=shift,
        shift_ci_low=float(np.quantile(shift_draws, tail)),
        shift_ci_high=float(np.quantile(shift_draws, 1 - tail)),
        shift_sigma=shift_sigma,
        worse_sigma=shift_sigma if direction == "lower" else -shift_sigma,
        shift_p_value=welch_p_value(ref, win),
        band_low=float(ref.mean()) - half_band,
        band_high=float(ref.mean()) + half_band,
        ks=float(ks.statistic),
        ks_p_value=float(ks.pvalue),
        ks_worse_p_value=float(ks_worse.pvalue),
        wasserstein=wasserstein,
        wasserstein_sigma=wasserstein / sigma if sigma > 0 else 0.0,
        **mix,
    )


def _finite(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if len(array) < 2:
        raise ValueError(f"the {name} needs at least two samples")
    if not np.isfinite(array).all():
        raise ValueError(f"the {name}'s per-sample values must be finite")
    return array


def welch_p_value(reference: np.ndarray, window: np.ndarray) -> float:
    if reference.var() == 0 and window.var() == 0:
        return 1.0 if reference.mean() == window.mean() else 0.0
    return float(stats.ttest_ind(window, reference, equal_var=False).pvalue)


def _unpaired_bootstrap(ref: np.ndarray, win: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Window means and mean shifts of n_boot resamples, each side drawn on its own."""
    rng = np.random.default_rng(seed)
    ref_means = np.concatenate(list(_resampled_means(ref, n_boot, rng)))
    win_means = np.concatenate(list(_resampled_means(win, n_boot, rng)))
    return win_means, win_means - ref_means


def _resampled_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    for picks in resample_indices(len(values), max(n_boot, 1), rng, block_cells=_BOOTSTRAP_BLOCK_CELLS):
        yield values[picks].mean(axis=1)


def psi(reference_counts: Sequence[float], window_counts: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index Σ (q − p) · ln(q / p) over bins, empty bins floored at ε."""
    p, q = _shares(reference_counts, epsilon), _shares(window_counts, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def _shares(counts: Sequence[float], epsilon: float) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return np.maximum(counts / counts.sum(), epsilon)


def category_mix(reference_categories: Sequence[str], window_categories: Sequence[str] | None) -> dict:
    """PSI and χ² of the category mix, the categories the reference never saw, and every share."""
    ref_counts = Counter(c or UNCATEGORISED for c in reference_categories)
    win_counts = Counter(c or UNCATEGORISED for c in (window_categories if window_categories is not None else []))
    names = sorted(set(ref_counts) | set(win_counts))
    ref = np.array([ref_counts[c] for c in names], dtype=np.float64)
    win = np.array([win_counts[c] for c in names], dtype=np.float64)
    new = [c for c in names if ref_counts[c] == 0]
    new_count = int(sum(win_counts[c] for c in new))
    return {
        "psi": psi(ref, win) if len(names) > 1 else 0.0,
        **_chi2(ref, win),
        "new_categories": new,
        "new_category_count": new_count,
        "new_category_share": new_count / max(win.sum(), 1.0),
        "categories": _category_shares(names, ref, win, set(new)),
    }


def _chi2(ref: np.ndarray, win: np.ndarray) -> dict:
    if len(ref) < 2:
        return {"chi2": 0.0, "chi2_p_value": 1.0}
    result = stats.chi2_contingency(np.stack([ref, win]), correction=False)
    return {"chi2": float(result.statistic), "chi2_p_value": float(result.pvalue)}


def _category_shares(names: list[str], ref: np.ndarray, win: np.ndarray, new: set[str]) -> list[CategoryShare]:
    p, q = _shares(ref, PSI_EPSILON), _shares(win, PSI_EPSILON)
    shares = [
        CategoryShare(
            category=name,
            reference_share=float(ref[i] / ref.sum()),
            window_share=float(win[i] / max(win.sum(), 1.0)),
            window_count=int(win[i]),
            psi_term=float((q[i] - p[i]) * math.log(q[i] / p[i])),
            new=name in new,
        )
        for i, name in enumerate(names)
    ]
    return sorted(shares, key=lambda s: s.window_share - s.reference_share, reverse=True)


def mean_embedding_shift(
    reference: np.ndarray, window: np.ndarray, *, n_permutations: int = 1999, seed: int = 0
) -> tuple[float, float]:
    """Euclidean distance of the two mean embeddings over the reference's spread (the RMS distance of
    its embeddings to their mean), and its permutation p-value (pooled rows shuffled between sides).

    The smallest p-value is 1 / (n_permutations + 1): 1,999 permutations can reach the block level."""
    ref, win = np.asarray(reference, dtype=np.float64), np.asarray(window, dtype=np.float64)
    centre = ref.mean(axis=0)
    spread = float(np.sqrt(np.mean(np.sum((ref - centre) ** 2, axis=1)))) or 1.0
    observed = float(np.linalg.norm(win.mean(axis=0) - centre))
    pooled, n_ref = np.concatenate([ref, win]), len(ref)
    rng = np.random.default_rng(seed)
    exceed = 0
    for _ in range(n_permutations):
        order = rng.permutation(len(pooled))
        distance = np.linalg.norm(pooled[order[:n_ref]].mean(axis=0) - pooled[order[n_ref:]].mean(axis=0))
        exceed += distance >= observed
    return observed / spread, (exceed + 1) / (n_permutations + 1)


# Outcome


def classify_traffic(comparison: TrafficComparison, specs: Sequence[TrafficSpec] = DEFAULT_SPECS) -> TrafficVerdict:
    """Green / amber / red: red when a block check fires, amber when only warn checks do."""
    if comparison.n < MIN_WINDOW:
        return TrafficVerdict("incomparable", [f"Only {comparison.n} samples: a window needs {MIN_WINDOW}."], [])
    fired = [(spec, reason) for spec in specs if (reason := _fires(comparison, spec))]
    blocks = [(s, r) for s, r in fired if s.severity == "block"]
    chosen = blocks or fired
    if not chosen:
        return TrafficVerdict("green", [_steady_sentence(comparison)], [])
    reasons = list(dict.fromkeys(r for _, r in chosen))
    return TrafficVerdict("red" if blocks else "amber", reasons, [s for s, _ in chosen])


def _fires(c: TrafficComparison, spec: TrafficSpec) -> str | None:
    alpha = ALPHA[spec.severity]
    if spec.metric == "mean_shift" and c.worse_sigma >= spec.limit and c.shift_p_value < alpha:
        direction = "up" if c.shift > 0 else "down"
        return (
            f"The mean moved {direction}, worse, by {abs(c.shift_sigma):.2f} σ ({c.reference_mean:.4f} → "
            f"{c.mean:.4f}, p = {c.shift_p_value:.1e}; limit {spec.limit:g} σ)"
        )
    if spec.metric == "wasserstein" and c.wasserstein_sigma >= spec.limit and c.ks_worse_p_value < alpha:
        return (
            f"The distribution moved towards worse values: Wasserstein {c.wasserstein_sigma:.2f} σ "
            f"(limit {spec.limit:g}), KS {c.ks:.3f} (one-sided p = {c.ks_worse_p_value:.1e})"
        )
    if spec.metric == "psi" and c.psi is not None and c.psi >= spec.limit and (c.chi2_p_value or 1.0) < alpha:
        return f"The category mix moved: PSI {c.psi:.3f} (limit {spec.limit:g}), χ² p = {c.chi2_p_value:.1e}"
    if (
        spec.metric == "new_categories"
        and c.new_category_share >= spec.limit
        and c.new_category_count >= MIN_NEW_CATEGORY_SAMPLES
    ):
        names = ", ".join(repr(n) for n in c.new_categories[:5])
        return f"New categories never seen in the reference: {names} ({100 * c.new_category_share:.1f} % of the window)"
    if (
        spec.metric == "embedding_shift"
        and c.embedding_shift is not None
        and c.embedding_shift >= spec.limit
        and (c.embedding_p_value or 1.0) < alpha
    ):
        return f"The mean embedding moved by {c.embedding_shift:.2f} of the reference's spread (limit {spec.limit:g})"
    return None


def _steady_sentence(c: TrafficComparison) -> str:
    mix = f", PSI {c.psi:.3f}" if c.psi is not None else ""
    figures = f"mean {c.mean:.4f} against {c.reference_mean:.4f} ({c.shift_sigma:+.2f} σ), KS {c.ks:.3f}{mix}"
    if c.worse_sigma <= -DEFAULT_SPECS[0].limit and c.shift_p_value < ALPHA["block"]:
        return f"The model does better on this traffic than on its reference ({figures}): no alarm"
    return f"Steady: {figures}"


# Golden subsets from logs


def unique_indices(keys: Sequence[str]) -> list[int]:
    """Index of the first occurrence of each key, in order."""
    seen: set[str] = set()
    return [i for i, key in enumerate(keys) if not (key in seen or seen.add(key))]


def stratified_indices(categories: Sequence[str], *, size: int, min_per_category: int, seed: int) -> list[int]:
    """A random sample of about `size` rows that keeps every category: each gets at least
    min(min_per_category, its rows), the rest of the size is shared in proportion to what is left
    (largest remainders). The minimums win when they alone exceed the size. Sorted indices."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, category in enumerate(categories):
        groups.setdefault(category or UNCATEGORISED, []).append(i)
    names = sorted(groups)
    floors = np.array([min(min_per_category, len(groups[n])) for n in names])
    spare = np.array([len(groups[n]) for n in names]) - floors
    quotas = floors + _largest_remainders(spare, max(0, size - int(floors.sum())))
    chosen = [i for name, quota in zip(names, quotas, strict=True) for i in rng.permutation(groups[name])[:quota]]
    return sorted(int(i) for i in chosen)


def _largest_remainders(capacity: np.ndarray, budget: int) -> np.ndarray:
    total = int(capacity.sum())
    if total <= budget:
        return capacity
    exact = capacity * budget / total
    share = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - share), kind="stable")[: budget - int(share.sum())]:
        share[i] += 1
    return share


def most_surprising(values: Sequence[float], count: int, *, exclude: Sequence[int] = ()) -> list[int]:
    """Indices of the `count` highest values not in `exclude`, highest first (ties by index)."""
    values = np.asarray(values, dtype=np.float64)
    excluded = set(int(i) for i in exclude)
    order = np.lexsort((np.arange(len(values)), -values))
    return [int(i) for i in order if int(i) not in excluded and np.isfinite(values[i])][: max(0, count)]


def outlier_count(fraction_or_count: str, size: int) -> int:
    """'5%' of the size, or a plain count."""
    text = (fraction_or_count or "0").strip()
    if text.endswith("%"):
        return math.ceil(float(text[:-1]) / 100 * size)
    return int(text)
