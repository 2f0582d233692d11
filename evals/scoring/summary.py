"""From per-sample scores to archived metric values: ratio-of-sums aggregates with bootstrap CIs.

Every metric is value = transform(Σ numerator / Σ denominator) over samples (see evals.scoring.metrics):
bits per byte = Σ nats / (ln 2 · Σ bytes); perplexity = exp(Σ nats / Σ tokens); similarity = mean cosine.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from evals.scoring.metrics import MetricSpec

# Resample blocks hold about this many drawn indices: bounded memory, cache-sized.
BOOTSTRAP_BLOCK_CELLS = 100_000


@dataclass(frozen=True)
class MetricSummary:
    value: float
    n: int
    std: float
    ci_low: float
    ci_high: float
    per_category: dict[str, dict[str, float]]


def metric_value(spec: MetricSpec, numerators: np.ndarray, denominators: np.ndarray) -> float:
    total = float(np.sum(denominators))
    return float(spec.value(float(np.sum(numerators)), total)) if total > 0 else float("nan")


def bootstrap_ci(
    spec: MetricSpec,
    numerators: np.ndarray,
    denominators: np.ndarray,
    *,
    n_boot: int,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval; each resample recomputes the ratio of sums."""
    n = len(numerators)
    if n < 2:
        value = metric_value(spec, numerators, denominators)
        return value, value
    rng = np.random.default_rng(seed)
    ratios = [
        numerators[picks].sum(axis=1) / denominators[picks].sum(axis=1) for picks in resample_indices(n, n_boot, rng)
    ]
    values = spec.value(np.concatenate(ratios), 1.0)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def resample_indices(
    n: int, n_boot: int, rng: np.random.Generator, *, block_cells: int = BOOTSTRAP_BLOCK_CELLS
) -> Iterator[np.ndarray]:
    """Bootstrap resamples in blocks of rows: each row the indices of n samples drawn with replacement,
    n_boot rows in all, a block about `block_cells` indices."""
    rows_per_block = max(1, block_cells // n)
    for start in range(0, n_boot, rows_per_block):
        yield rng.integers(0, n, size=(min(rows_per_block, n_boot - start), n))


def per_sample_values(spec: MetricSpec, numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return spec.value(np.where(denominators > 0, numerators, np.nan), np.where(denominators > 0, denominators, 1.0))


def summarise(
    spec: MetricSpec,
    numerators: np.ndarray,
    denominators: np.ndarray,
    categories: Sequence[str],
    *,
    n_boot: int,
    seed: int = 0,
) -> MetricSummary:
    low, high = bootstrap_ci(spec, numerators, denominators, n_boot=n_boot, seed=seed)
    per_sample = per_sample_values(spec, numerators, denominators)
    labels = np.asarray(list(categories), dtype=object)
    per_category = {}
    for category in sorted(set(categories)):
        mask = labels == category
        per_category[category or "uncategorised"] = {
            "value": metric_value(spec, numerators[mask], denominators[mask]),
            "n": int(mask.sum()),
        }
    return MetricSummary(
        value=metric_value(spec, numerators, denominators),
        n=len(numerators),
        std=float(np.nanstd(per_sample)) if len(per_sample) else 0.0,
        ci_low=low,
        ci_high=high,
        per_category=per_category,
    )
