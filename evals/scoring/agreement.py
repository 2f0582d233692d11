"""Agreement between raters on categorical labels: a judge against people, or people among themselves.

- Cohen's κ for two raters on the same items: (p_o − p_e) / (1 − p_e), p_o the share of items they
  agree on, p_e the agreement their marginals would give by chance (Cohen 1960; the same number as
  scikit-learn's `cohen_kappa_score`). When both raters put every item in one category, p_e = 1 and
  κ is undefined (NaN): such a sample says nothing about agreement.
- Its interval: a percentile bootstrap over items (the unit that was sampled), seeded, so one
  family's numbers are the same on every page load.
- Fleiss' κ for several raters, each item rated by any number ≥ 2 of them (Fleiss 1971; with a
  constant number of raters per item it is exactly the textbook statistic).

Pure: arrays in, numbers out.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Resamples of the κ interval: the interval's ends move by about 0.01 between seeds at 2000.
DEFAULT_RESAMPLES = 2000
_BLOCK_ROWS = 256


@dataclass(frozen=True)
class Agreement:
    """Two raters on n items: κ with its bootstrap interval, the raw share of agreement, and the
    confusion matrix (rows: the first rater's category, columns: the second's, in `categories` order)."""

    categories: tuple[str, ...]
    n: int
    kappa: float
    ci_low: float
    ci_high: float
    agreement: float
    confusion: list[list[int]]
    confidence: float


def _codes(labels: Sequence[str], categories: Sequence[str]) -> np.ndarray:
    index = {category: i for i, category in enumerate(categories)}
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the categories {list(categories)}")
    return np.array([index[label] for label in labels], dtype=np.int64)


def _kappa_from_counts(counts: np.ndarray) -> np.ndarray:
    """κ of each confusion matrix in a stack (..., k, k); NaN where chance agreement is 1."""
    total = counts.sum(axis=(-2, -1)).astype(np.float64)
    observed = np.trace(counts, axis1=-2, axis2=-1) / total
    expected = (counts.sum(axis=-1) * counts.sum(axis=-2)).sum(axis=-1) / total**2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected < 1.0, (observed - expected) / (1.0 - expected), np.nan)


def confusion_matrix(first: np.ndarray, second: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(first * k + second, minlength=k * k).reshape(k, k)


def cohen_kappa(first: Sequence[str], second: Sequence[str], categories: Sequence[str]) -> float:
    """Cohen's κ of two raters' labels on the same items (NaN when undefined)."""
    if len(first) != len(second):
        raise ValueError("both raters must label the same items")
    if not first:
        return float("nan")
    k = len(categories)
    return float(_kappa_from_counts(confusion_matrix(_codes(first, categories), _codes(second, categories), k)))


def kappa_agreement(
    first: Sequence[str],
    second: Sequence[str],
    categories: Sequence[str],
    *,
    n_boot: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> Agreement:
    """Cohen's κ with its percentile bootstrap interval over items, raw agreement and the confusion
    matrix. Resamples whose κ is undefined are left out of the interval; with none left (or no items)
    the interval is NaN."""
    if len(first) != len(second):
        raise ValueError("both raters must label the same items")
    k, n = len(categories), len(first)
    a, b = _codes(first, categories), _codes(second, categories)
    counts = confusion_matrix(a, b, k)
    if n == 0:
        nan = float("nan")
        return Agreement(tuple(categories), 0, nan, nan, nan, nan, counts.tolist(), confidence)
    kappa = float(_kappa_from_counts(counts))
    low, high = _bootstrap_interval(a * k + b, k, n_boot=n_boot, seed=seed, confidence=confidence)
    return Agreement(
        categories=tuple(categories),
        n=n,
        kappa=kappa,
        ci_low=low,
        ci_high=high,
        agreement=float(np.trace(counts) / n),
        confusion=counts.tolist(),
        confidence=confidence,
    )


def _bootstrap_interval(cells: np.ndarray, k: int, *, n_boot: int, seed: int, confidence: float) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    n = len(cells)
    kappas = []
    for start in range(0, n_boot, _BLOCK_ROWS):
        rows = min(_BLOCK_ROWS, n_boot - start)
        drawn = cells[rng.integers(0, n, size=(rows, n))]
        # Counts per resample: offset each row's cells so one bincount fills the whole block.
        offsets = drawn + (np.arange(rows) * k * k)[:, None]
        counts = np.bincount(offsets.ravel(), minlength=rows * k * k).reshape(rows, k, k)
        kappas.append(_kappa_from_counts(counts))
    values = np.concatenate(kappas)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' κ from an items × categories matrix of how many raters put each item in each category.

    Items rated by fewer than two raters are left out; each item's observed agreement is over its own
    number of raters, so with a constant number of raters this is the statistic of Fleiss (1971).
    NaN when no item has two ratings or chance agreement is 1."""
    counts = np.asarray(counts, dtype=np.float64)
    raters = counts.sum(axis=1)
    counts, raters = counts[raters >= 2], raters[raters >= 2]
    if len(counts) == 0:
        return float("nan")
    per_item = ((counts * (counts - 1)).sum(axis=1)) / (raters * (raters - 1))
    shares = counts.sum(axis=0) / raters.sum()
    expected = float((shares**2).sum())
    if expected >= 1.0:
        return float("nan")
    return (float(per_item.mean()) - expected) / (1.0 - expected)
