"""Drift statistics: one candidate against its baseline on one metric.

Every metric is a ratio of per-sample sums, value = transform(Σ num_i / Σ den_i):

- bits per byte: num = NLL nats / ln 2, den = UTF-8 bytes, lower is better;
- perplexity: num = NLL nats, den = tokens, transform exp, lower is better;
- similarity: num = cosine, den = 1, higher is better.

The delta is signed so that negative means worse: relative to the baseline, or in the metric's
own units for a metric whose spec says `delta="absolute"` (counts whose baseline may be 0). Candidate and baseline arrays are
paired: element i of each is the same golden sample, so every resampling statistic draws the same
indices for both. Pure numpy / scipy, no Django: the verdict service stores what this returns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

import numpy as np
from scipy import stats

from evals.scoring.metrics import MetricSpec
from evals.scoring.summary import resample_indices

Rule = Literal["relative", "band", "absolute"]
Severity = Literal["warn", "block"]
Outcome = Literal["green", "amber", "red"]

MIN_BAND_HISTORY = 3


class UndefinedRelativeDelta(ValueError):
    """The baseline's value is 0 (no exact match at all, say): a relative change has no meaning."""


def relative_undefined_reason(spec: MetricSpec) -> str:
    """The reason a verdict gives when the baseline's value is 0 on a metric whose change is relative."""
    return f"The baseline's {spec.label} is 0: a relative change is undefined, so it is not compared."


FINGERPRINT_KEYS = ("dataset_sha256", "tokenizer_hash", "scorer_version", "max_length")
# Bootstrap count matrices are built in blocks of this many cells: bounded memory, cache-sized.
_BOOTSTRAP_BLOCK_CELLS = 100_000


class CategoryDelta(TypedDict):
    candidate: float
    baseline: float
    delta: float
    n: int


@dataclass(frozen=True)
class Band:
    """Historical band: centre ± k·scale over the values of past production snapshots."""

    center: float
    scale: float
    n: int

    def edges(self, k: float) -> tuple[float, float]:
        return self.center - k * self.scale, self.center + k * self.scale

    def position(self, value: float) -> float | None:
        return (value - self.center) / self.scale if self.scale > 0 else None


@dataclass(frozen=True)
class Flips:
    """Questions answered differently by a candidate and its baseline (a `binary` metric), and
    McNemar's exact two-sided p-value: under no change, a flip is equally likely either way."""

    right_to_wrong: int
    wrong_to_right: int
    p_value: float


def mcnemar(candidate: np.ndarray, baseline: np.ndarray) -> Flips:
    """The flips between paired 0/1 arrays and McNemar's exact test on them (a binomial test of the
    right→wrong count among all flips, p = ½)."""
    lost = int(np.sum((baseline == 1) & (candidate == 0)))
    gained = int(np.sum((baseline == 0) & (candidate == 1)))
    flips = lost + gained
    p_value = 1.0 if flips == 0 else min(1.0, 2.0 * float(stats.binom.cdf(min(lost, gained), flips, 0.5)))
    return Flips(right_to_wrong=lost, wrong_to_right=gained, p_value=p_value)


@dataclass(frozen=True)
class Comparison:
    spec: MetricSpec
    n: int
    confidence: float
    candidate: float
    baseline: float
    delta: float
    ci_low: float
    ci_high: float
    cand_ci_low: float
    cand_ci_high: float
    p_value: float
    band: Band | None
    band_low: float | None
    band_high: float | None
    band_position: float | None
    ks: float | None
    wasserstein: float | None
    per_category: dict[str, CategoryDelta]
    flips: Flips | None = None

    @property
    def metric(self) -> str:
        return self.spec.name


def compare(
    spec: MetricSpec,
    cand_num: Sequence[float] | np.ndarray,
    cand_den: Sequence[float] | np.ndarray,
    base_num: Sequence[float] | np.ndarray,
    base_den: Sequence[float] | np.ndarray,
    *,
    history: Sequence[float] = (),
    band_k: float = 3.0,
    robust: bool = False,
    categories: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Compare paired per-sample arrays of a candidate and its baseline.

    ci_low/ci_high: percentile interval of a paired bootstrap of the delta (`spec.change`); every
    resample draws the same sample indices for candidate and baseline and recomputes
    Σnum/Σden (never a mean of per-sample ratios). cand_ci_low/high: the same resamples for the
    candidate value. p_value: two-sided paired t-test (n − 1 degrees of freedom) on the
    delta-method linearisation of the delta, i.e. on each sample's influence value; for a `binary`
    metric (0/1 per question) McNemar's exact test instead, with the flipped questions in `flips`.
    Band: mean ± band_k·σ of `history` (median ± band_k·1.4826·MAD when robust), None under
    MIN_BAND_HISTORY values. ks / wasserstein compare the per-sample ratios num/den (untransformed,
    so a few short texts cannot dominate perplexity); wasserstein is divided by the baseline's
    per-sample σ.
    """
    columns = _paired_columns(cand_num, cand_den, base_num, base_den)
    candidate = float(spec.value(columns[0].sum(), columns[1].sum()))
    baseline = float(spec.value(columns[2].sum(), columns[3].sum()))
    if baseline == 0 and not spec.absolute:
        raise UndefinedRelativeDelta(relative_undefined_reason(spec))
    delta = float(spec.change(candidate, baseline))
    boot_candidate, boot_delta = _bootstrap(spec, columns, n_boot, seed)
    ci_low, ci_high = _percentile_interval(boot_delta, confidence)
    cand_ci_low, cand_ci_high = _percentile_interval(boot_candidate, confidence)
    band = historical_band(history, robust=robust)
    band_low, band_high = band.edges(band_k) if band else (None, None)
    ks, wasserstein = _distribution_shift(columns)
    flips = mcnemar(columns[0], columns[2]) if spec.binary else None
    return Comparison(
        spec=spec,
        n=len(columns[0]),
        confidence=confidence,
        candidate=candidate,
        baseline=baseline,
        delta=delta,
        ci_low=ci_low,
        ci_high=ci_high,
        cand_ci_low=cand_ci_low,
        cand_ci_high=cand_ci_high,
        p_value=flips.p_value if flips else _paired_p_value(spec, columns, candidate, baseline, delta),
        band=band,
        band_low=band_low,
        band_high=band_high,
        band_position=band.position(candidate) if band else None,
        ks=ks,
        wasserstein=wasserstein,
        per_category=_per_category(spec, columns, categories),
        flips=flips,
    )


def _paired_columns(*arrays: Sequence[float] | np.ndarray) -> np.ndarray:
    """Stack cand_num, cand_den, base_num, base_den as rows; they must describe the same samples."""
    columns = [np.asarray(array, dtype=np.float64).ravel() for array in arrays]
    lengths = {len(column) for column in columns}
    if len(lengths) != 1:
        raise ValueError(f"paired arrays differ in length: {[len(c) for c in columns]}")
    if lengths == {0}:
        raise ValueError("no samples to compare")
    if not all(np.isfinite(column).all() for column in columns):
        raise ValueError("per-sample values must be finite")
    return np.stack(columns)


def _bootstrap(spec: MetricSpec, columns: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate values and deltas of n_boot paired resamples."""
    rng = np.random.default_rng(seed)
    totals = np.concatenate([counts @ columns.T for counts in _resample_counts(columns.shape[1], n_boot, rng)])
    with np.errstate(divide="ignore", invalid="ignore"):
        candidate = spec.value(totals[:, 0], totals[:, 1])
        delta = spec.change(candidate, spec.value(totals[:, 2], totals[:, 3]))
    return candidate, delta


def _resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Blocks of a (n_boot × n) matrix: how often each sample is drawn in each resample."""
    for picks in resample_indices(n, n_boot, rng, block_cells=_BOOTSTRAP_BLOCK_CELLS):
        rows = len(picks)
        draws = picks + n * np.arange(rows)[:, None]
        yield np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _paired_p_value(spec: MetricSpec, columns: np.ndarray, candidate: float, baseline: float, delta: float) -> float:
    n = columns.shape[1]
    influence = _delta_influence(spec, columns, candidate, baseline)
    standard_error = influence.std(ddof=1) / math.sqrt(n) if n > 1 else 0.0
    if standard_error == 0:
        return 1.0 if delta == 0 else 0.0
    return float(2.0 * stats.t.sf(abs(delta) / standard_error, df=n - 1))


def _delta_influence(spec: MetricSpec, columns: np.ndarray, candidate: float, baseline: float) -> np.ndarray:
    """Per-sample influence values of the delta (delta method through both ratios)."""
    cand_num, cand_den, base_num, base_den = columns
    sign = 1.0 if spec.direction == "higher" else -1.0
    if spec.absolute:
        d_delta_d_candidate, d_delta_d_baseline = sign, -sign
    else:
        d_delta_d_candidate = sign / abs(baseline)
        d_delta_d_baseline = -sign * candidate / (baseline * abs(baseline))
    return d_delta_d_candidate * _value_influence(
        spec, cand_num, cand_den, candidate
    ) + d_delta_d_baseline * _value_influence(spec, base_num, base_den, baseline)


def _value_influence(spec: MetricSpec, num: np.ndarray, den: np.ndarray, value: float) -> np.ndarray:
    ratio = num.sum() / den.sum()
    ratio_influence = (num - ratio * den) / den.mean()
    return ratio_influence * (value if spec.transform == "exp" else 1.0)


def historical_band(history: Sequence[float], *, robust: bool = False) -> Band | None:
    """Centre and scale of past production values; None with fewer than MIN_BAND_HISTORY."""
    values = np.asarray(history, dtype=np.float64)
    if len(values) < MIN_BAND_HISTORY:
        return None
    if robust:
        scale = stats.median_abs_deviation(values, scale="normal")
        return Band(center=float(np.median(values)), scale=float(scale), n=len(values))
    return Band(center=float(values.mean()), scale=float(values.std(ddof=1)), n=len(values))


def _distribution_shift(columns: np.ndarray) -> tuple[float | None, float | None]:
    cand_num, cand_den, base_num, base_den = columns
    scored = (cand_den > 0) & (base_den > 0)
    if not scored.any():
        return None, None
    candidate = cand_num[scored] / cand_den[scored]
    baseline = base_num[scored] / base_den[scored]
    ks = float(stats.ks_2samp(candidate, baseline).statistic)
    spread = baseline.std(ddof=1) if len(baseline) > 1 else 0.0
    if spread == 0:
        return ks, None
    return ks, float(stats.wasserstein_distance(candidate, baseline) / spread)


def _per_category(spec: MetricSpec, columns: np.ndarray, categories: Sequence[str] | None) -> dict[str, CategoryDelta]:
    if categories is None:
        return {}
    labels = np.asarray(categories, dtype=str)
    if len(labels) != columns.shape[1]:
        raise ValueError(f"{len(labels)} categories for {columns.shape[1]} samples")
    result: dict[str, CategoryDelta] = {}
    for label in sorted(set(labels.tolist())):
        cand_num, cand_den, base_num, base_den = columns[:, labels == label].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            candidate = float(spec.value(cand_num, cand_den))
            baseline = float(spec.value(base_num, base_den))
            delta = float(spec.change(candidate, baseline))
        result[label] = CategoryDelta(
            candidate=candidate, baseline=baseline, delta=delta, n=int((labels == label).sum())
        )
    return result


@dataclass(frozen=True)
class ThresholdSpec:
    """One version of a threshold record.

    relative: limit L allows a degradation of L, crossed when delta < −L: a share of the baseline
    (0.02 = 2 %) for relative-delta metrics, the metric's own units for absolute-delta ones.
    absolute: limit is a ceiling (lower-better metrics) or floor (higher-better) on the value.
    band: limit is k, the half-width of the historical band in σ; only the worse side counts.
    """

    id: int | str
    version: int
    metric: str
    rule: Rule
    limit: float
    severity: Severity


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    threshold: ThresholdSpec | None
    reasons: list[str]


@dataclass(frozen=True)
class _Check:
    threshold: ThresholdSpec
    outcome: Outcome
    reason: str | None


_RANK: dict[Outcome, int] = {"green": 0, "amber": 1, "red": 2}


def classify(comparison: Comparison, thresholds: Sequence[ThresholdSpec]) -> Verdict:
    """Green / amber / red from the thresholds of this comparison's metric.

    Red: the interval lies entirely beyond a block limit. Amber: a block limit is crossed by the
    point estimate while its interval straddles it, or a warn limit is crossed. Green otherwise.
    The deciding threshold is the first of the most severe outcome.
    """
    checks = [_check(comparison, t) for t in thresholds if t.metric == comparison.metric]
    worst = max((c.outcome for c in checks), key=_RANK.__getitem__, default="green")
    reasons = [c.reason for c in sorted(checks, key=lambda c: -_RANK[c.outcome]) if c.reason]
    if worst == "green":
        return Verdict("green", None, [f"{_change_sentence(comparison)}, within every limit", *reasons])
    deciding = next(c.threshold for c in checks if c.outcome == worst)
    return Verdict(outcome=worst, threshold=deciding, reasons=reasons)


def _check(comparison: Comparison, threshold: ThresholdSpec) -> _Check:
    if threshold.rule == "relative":
        return _relative_check(comparison, threshold)
    if threshold.rule == "absolute":
        return _value_check(comparison, threshold, threshold.limit, _absolute_phrase(comparison, threshold))
    if comparison.band is None:
        reason = f"no {comparison.spec.label} band yet: fewer than {MIN_BAND_HISTORY} production values"
        return _Check(threshold, "green", reason)
    return _band_check(comparison, threshold, comparison.band)


def _relative_check(comparison: Comparison, threshold: ThresholdSpec) -> _Check:
    limit = threshold.limit
    if comparison.delta >= -limit:
        return _Check(threshold, "green", None)
    whole_interval_beyond = comparison.ci_high < -limit
    outcome = _crossing_outcome(threshold.severity, whole_interval_beyond)
    reason = f"{_change_sentence(comparison)}, beyond the {change_limit_text(comparison.spec, limit)} {threshold.severity} limit"
    return _Check(threshold, outcome, reason + _straddle_note(threshold, whole_interval_beyond))


def _band_check(comparison: Comparison, threshold: ThresholdSpec, band: Band) -> _Check:
    low, high = band.edges(threshold.limit)
    edge = high if comparison.spec.direction == "lower" else low
    position = band.position(comparison.candidate)
    z_text = f" (z = {position:+.1f})" if position is not None else ""
    phrase = (
        f"{_format_value(comparison.candidate)}{z_text}, outside the {threshold.limit:g}σ band "
        f"{_format_value(low)} – {_format_value(high)} of {band.n} production values"
    )
    return _value_check(comparison, threshold, edge, phrase)


def _value_check(comparison: Comparison, threshold: ThresholdSpec, edge: float, phrase: str) -> _Check:
    """A limit on the candidate value itself, using the candidate's own interval."""
    spec = comparison.spec
    if not spec.is_worse(comparison.candidate, edge):
        return _Check(threshold, "green", None)
    best_end = comparison.cand_ci_low if spec.direction == "lower" else comparison.cand_ci_high
    whole_interval_beyond = spec.is_worse(best_end, edge)
    outcome = _crossing_outcome(threshold.severity, whole_interval_beyond)
    reason = f"{spec.label} {phrase}" + _straddle_note(threshold, whole_interval_beyond)
    return _Check(threshold, outcome, reason)


def _absolute_phrase(comparison: Comparison, threshold: ThresholdSpec) -> str:
    lower_better = comparison.spec.direction == "lower"
    side, kind = ("above", "ceiling") if lower_better else ("below", "floor")
    interval = f"{_confidence_label(comparison)} {_format_value(comparison.cand_ci_low)} – {_format_value(comparison.cand_ci_high)}"
    return (
        f"{_format_value(comparison.candidate)} ({interval}) {side} the {threshold.severity} "
        f"{kind} of {_format_value(threshold.limit)}"
    )


def _crossing_outcome(severity: Severity, whole_interval_beyond: bool) -> Outcome:
    return "red" if severity == "block" and whole_interval_beyond else "amber"


def _straddle_note(threshold: ThresholdSpec, whole_interval_beyond: bool) -> str:
    if threshold.severity == "block" and not whole_interval_beyond:
        return "; the interval straddles the limit"
    return ""


def _change_sentence(comparison: Comparison) -> str:
    """'bits per byte worse by 3.1 % (95 % CI 2.4 – 3.9 %)', the interval in the same sense."""
    delta, low, high = comparison.delta, comparison.ci_low, comparison.ci_high
    if delta < 0:
        word, delta, low, high = "worse", -delta, -high, -low
    else:
        word = "better"
    spec = comparison.spec
    if spec.absolute:
        interval = f"{_confidence_label(comparison)} {low:.3g} – {high:.3g}"
        return f"{spec.label} {word} by {delta:.3g} ({interval})"
    interval = f"{_confidence_label(comparison)} {100 * low:.1f} – {100 * high:.1f} %"
    return f"{spec.label} {word} by {100 * delta:.1f} % ({interval})"


def change_limit_text(spec: MetricSpec, limit: float) -> str:
    """A change limit as its threshold means it: '2 %' (relative) or '0.5' (in the metric's units)."""
    return f"{limit:g}" if spec.absolute else f"{100 * limit:g} %"


def _confidence_label(comparison: Comparison) -> str:
    return f"{100 * comparison.confidence:g} % CI"


def _format_value(value: float) -> str:
    return f"{value:.4g}"


def fingerprints_comparable(
    a: Mapping[str, object], b: Mapping[str, object], *, spec: MetricSpec | None = None
) -> tuple[bool, list[str]]:
    """Whether two scoring fingerprints allow a comparison, and the keys that differ.

    A key missing from either side counts as differing: it cannot be checked. For a
    tokenizer-free metric (bits per byte) the tokenizer is not compared, bytes being
    tokenizer-free. Keys a scorer adds under `settings` (generation settings, an embedder's
    sha256) must be equal too.
    """
    tokenizer_free = spec is not None and spec.tokenizer_free
    keys = [k for k in FINGERPRINT_KEYS if not (k == "tokenizer_hash" and tokenizer_free)]
    differing = [k for k in keys if k not in a or k not in b or a[k] != b[k]]
    if a.get("settings") != b.get("settings"):
        differing.append("settings")
    return not differing, differing
