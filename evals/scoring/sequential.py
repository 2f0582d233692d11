"""Anytime-valid confidence sequences for scoring a candidate on part of a finite golden set.

The baseline's per-sample num / den are known for all N golden samples. The candidate is scored
chunk by chunk in a random order; after each chunk the monitor gives a confidence interval for the
relative delta over the whole finite set, valid simultaneously at every chunk, so a caller may
stop as soon as it is decisive (optional stopping) without inflating the error rate.

What is estimated. Candidate and baseline share the denominators of a sample (bytes of the same
text, tokens of the same tokenizer, 1 for similarity; `update` checks it), so the candidate value
is transform((Σ b_j + D) / Σ den_j) with D = Σ_j d_j, d_j = cand_num_j − base_num_j: the relative
delta is a monotone function of the single population total D, and an interval for D maps to one
for the delta.

Sampling design. Samples are drawn without replacement, stratified by category, and inside a
category either uniformly or with probability proportional to a known size w_j ("successive
sampling", drawn as an exponential race). The size used by `SequentialMonitor.start` is the
baseline's own num (its NLL), so a sample's chance follows its share of the metric. The next
category is chosen from the draws so far only (`_ScheduleClock`), never from scores. Write
ρ_j = d_j / w_j. When the i-th draw comes from category h, E[ρ_i | past] = (D_h − S_h) / R_h, where
D_h is the category's total of d, S_h the part already seen and R_h the weight not yet drawn:
linear in the unknown D_h, as in uniform sampling without replacement (the case w ≡ 1).

Confidence sequence. The empirical-Bernstein confidence sequence for sampling without replacement
of Waudby-Smith & Ramdas (2020), "Confidence sequences for sampling without replacement",
NeurIPS 33 (§3), built on the size-weighted conditional mean above. For each side the process
    M_t = Π_i exp(λ_i ξ_i − ψ(λ_i) ξ_i² + λ_i (m̂_{i−1} − E[ρ_i | past]) / s_i),
    ξ_i = (ρ̃_i − m̂_{i−1}) / s_i,   ψ(λ) = −log(1 − λ) − λ,
with m̂ the running mean, s_i = m̂_{i−1} − floor and ρ̃_i = min(ρ_i, m̂_{i−1} + s_i), is a
non-negative supermartingale at the true totals: Fan et al.'s inequality needs only ξ ≥ −1, and
the predictable cap on ρ̃ only lowers its mean while keeping one extreme sample from costing
ψ·ξ². Ville's inequality bounds the chance that it ever exceeds 2/α by α/2. The bets are their
predictable plug-in λ_i = min(√(2 log(2/α) / (σ̂²_{i−1} i log(1 + i))), 3/4) (PrPl-EB).
log M_t is linear in the category totals D_h, with slope A_h = Σ_{i in h} λ_i / (s_i R_h,i), so the
lower bound is the largest total m at which every split Σ_h D_h = m, each D_h within what its
unseen samples can still contribute, has M_t ≥ 2/α: a small linear programme solved greedily.
That worst split piles the unseen mass where the slope is smallest; the schedule of categories
keeps the slopes level up to one draw. The upper bound is the same on −d. Bounds are intersected
over all draws so far; at n = N the interval is the exact value.

Bounds on ρ, and what they assume. Each sample has honest bounds from the metric's range
(`MetricSpec.unit_range`): NLL ≥ 0, so with w = baseline NLL, ρ ≥ −1; a cosine is ≤ 1. The other
side has no honest bound for NLL, so it assumes that a sample's value changes by at most
`max_change` times its baseline value (default 1: the NLL of a sample at most doubles). For the
lower-is-better metrics the assumption is only used to certify "not worse" (green); "worse" (red)
rests on the honest side alone. Every scored sample is checked: once one breaks the assumption the
side that used it falls back to the honest bound (no bound at all for NLL), so a candidate that
got much worse on some samples can never be passed early, only on the full set. What no sampling
can rule out remains: a rare unseen sample that broke the assumption.

A metric on a subset. A metric that applies to only some samples (an answer metric: those with a
prompt) is monitored on its own samples (`applies_to`), in the design's order restricted to them.
Inside a category the exponential race restricted to a subset is the race of that subset with the
same sizes, and the category of each draw is still chosen from the draws so far, so the process
above, advanced only at the subset's draws, is a supermartingale all the same; its interval is for
the metric's delta over its own samples, exact once all of them are scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from evals.scoring.drift import MetricSpec

Decision = Literal["continue", "green", "red", "amber"]

# Largest bet as a fraction of the wealth at risk; Waudby-Smith & Ramdas suggest 1/2 or 3/4.
LAMBDA_CAP = 0.75
# Prior for the plug-in variance of ξ (in units of its range), as in PrPl-EB.
PRIOR_VARIANCE = 0.25
# Relative slack when checking that a value lies within a bound (floating-point rounding).
_BOUND_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Interval:
    """Confidence interval for the relative delta over the whole golden set after n samples."""

    low: float
    high: float
    n: int


def design_weights(
    spec: MetricSpec, base_num: Sequence[float] | np.ndarray, base_den: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Sampling sizes: the baseline's num when it cannot be negative (NLL), else the den."""
    sizes = base_num if spec.unit_range[0] >= 0 else base_den
    return _positive_weights(sizes, len(base_num))


def sampling_order(
    categories: Sequence[str], seed: int, *, weights: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """A reproducible permutation of sample indices, stratified by category.

    Inside a category the order is uniform, or successive sampling proportional to `weights`.
    The categories take turns on the schedule of `_ScheduleClock`: unweighted, every prefix holds
    each category in proportion to its samples to within about one; weighted, roughly in proportion
    to its weight not yet drawn.
    """
    codes = _category_codes(categories, len(categories))
    sizes = _positive_weights(weights, len(codes))
    arrival = np.random.default_rng(seed).standard_exponential(len(codes)) / sizes
    queues = [units[np.argsort(arrival[units], kind="stable")] for units in _units_by_category(codes)]
    clock = _ScheduleClock(codes, sizes)
    order = np.empty(len(codes), dtype=np.int64)
    for position in range(len(codes)):
        category = clock.next_category()
        order[position] = queues[category][clock.drawn[category]]
        clock.draw(order[position])
    return order


def _units_by_category(codes: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(codes == code) for code in range(int(codes.max()) + 1)]


class _ScheduleClock:
    """Which category draws next: the one whose clock Σ 1 / R_h, advanced by half a step, is least.

    R_h is the category's weight not yet drawn. A draw from category h adds λ / (s · R_h) to the
    slope of its total in log M_t, so level clocks keep the slopes of all categories level, which
    the worst-case split of the total would otherwise exploit; they also draw from each category
    in proportion to its weight not yet drawn, as size-weighted sampling of the whole set would.
    """

    def __init__(self, codes: np.ndarray, weights: np.ndarray) -> None:
        self._codes, self._weights = codes, weights
        self._unseen = np.bincount(codes, weights=weights)
        self._left = np.bincount(codes)
        self._clock = np.zeros(len(self._left))
        self.drawn = np.zeros(len(self._left), dtype=np.int64)

    def next_category(self) -> int:
        open_categories = self._left > 0
        half_step = 0.5 / np.where(open_categories, self._unseen, 1.0)
        return int(np.argmin(np.where(open_categories, self._clock + half_step, np.inf)))

    def draw(self, unit: int) -> None:
        category = self._codes[unit]
        self._clock[category] += 1.0 / self._unseen[category]
        self._unseen[category] -= self._weights[unit]
        self._left[category] -= 1
        self.drawn[category] += 1


def _category_codes(categories: Sequence[str] | None, n: int) -> np.ndarray:
    if categories is None:
        return np.zeros(n, dtype=np.int64)
    if len(categories) != n:
        raise ValueError(f"{len(categories)} categories for {n} samples")
    return np.unique(np.asarray(categories, dtype=str), return_inverse=True)[1].astype(np.int64)


def _positive_weights(weights: Sequence[float] | np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    sizes = np.asarray(weights, dtype=np.float64)
    if sizes.shape != (n,) or not (np.isfinite(sizes) & (sizes > 0)).all():
        raise ValueError(f"sampling weights must be {n} finite positive numbers")
    return sizes


class SequentialMonitor:
    """Confidence sequence for the relative delta while a candidate is scored in `order`.

    `order` must come from `sampling_order(categories, seed, weights=weights)` with the same
    categories and weights (weights=None: uniform inside categories); `start` builds the
    size-weighted design itself, which needs far fewer samples. The baseline values are those of
    every sample of the design, or, with `applies_to` (increasing indices into the design), of
    those samples only. Feed candidate values in `.order` with `update`; `decide` says whether to
    stop.
    """

    def __init__(
        self,
        spec: MetricSpec,
        base_num: Sequence[float] | np.ndarray,
        base_den: Sequence[float] | np.ndarray,
        order: Sequence[int] | np.ndarray,
        *,
        categories: Sequence[str] | None,
        weights: Sequence[float] | np.ndarray | None = None,
        confidence: float = 0.95,
        min_samples: int,
        max_change: float = 1.0,
        applies_to: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        num, den = np.asarray(base_num, dtype=np.float64), np.asarray(base_den, dtype=np.float64)
        if num.shape != den.shape or num.ndim != 1 or len(num) == 0:
            raise ValueError("base_num and base_den must be paired one-dimensional arrays")
        if max_change <= 0:
            raise ValueError("max_change must be positive")
        sizes = _positive_weights(weights, len(order))
        codes = _category_codes(categories, len(order))
        members = _members(applies_to, len(order), len(num))
        self.order = _restricted(_validated_order(order, codes, sizes), members)
        sizes, codes = sizes[members], np.unique(codes[members], return_inverse=True)[1]
        self._spec = spec
        self._alpha = 1.0 - confidence
        self._min_samples = min_samples
        self._base_total, self._den_total = float(num.sum()), float(den.sum())
        self._base_num, self._den = num[self.order], den[self.order]
        self._weights, self._strata = sizes[self.order], codes[self.order]
        self._rho = np.empty(0)
        self._interval: Interval | None = None
        honest_floor, honest_ceiling, allowed_change = self._rho_bounds(max_change)
        self._honest = (honest_floor, honest_ceiling)
        self._lower = _OneSidedBound(np.maximum(honest_floor, -allowed_change), honest_floor, honest_ceiling)
        self._upper = _OneSidedBound(np.maximum(-honest_ceiling, -allowed_change), -honest_ceiling, -honest_floor)

    @classmethod
    def start(
        cls,
        spec: MetricSpec,
        base_num: Sequence[float] | np.ndarray,
        base_den: Sequence[float] | np.ndarray,
        categories: Sequence[str] | None,
        *,
        seed: int,
        confidence: float = 0.95,
        min_samples: int,
        max_change: float = 1.0,
    ) -> SequentialMonitor:
        """A monitor on the size-weighted design, with its own order (see `.order`)."""
        weights = design_weights(spec, base_num, base_den)
        labels = categories if categories is not None else [""] * len(weights)
        order = sampling_order(labels, seed, weights=weights)
        return cls(
            spec,
            base_num,
            base_den,
            order,
            categories=categories,
            weights=weights,
            confidence=confidence,
            min_samples=min_samples,
            max_change=max_change,
        )

    @property
    def n(self) -> int:
        return len(self._rho)

    @property
    def interval(self) -> Interval | None:
        return self._interval

    def update(
        self, cand_num_chunk: Sequence[float] | np.ndarray, cand_den_chunk: Sequence[float] | np.ndarray
    ) -> Interval:
        """Add the candidate's values for the next samples of `order`; the interval after them."""
        rho = np.concatenate([self._rho, self._chunk_rho(cand_num_chunk, cand_den_chunk)])
        self._rho = rho
        if self.n == len(self.order):
            exact = self._delta_range(self._observed_total(), self._observed_total())
            self._interval = Interval(exact[0], exact[1], self.n)
            return self._interval
        draws = (self._weights, self._strata, self._alpha / 2.0)
        low_total = self._lower.update(rho, *draws)
        high_total = -self._upper.update(-rho, *draws)
        if low_total > high_total:
            # Only after a miscoverage event; fall back to what the metric's range alone allows.
            low_total, high_total = self._honest_total_range()
        self._interval = Interval(*self._delta_range(low_total, high_total), self.n)
        return self._interval

    def decide(self, block_limit: float, green_limit: float) -> Decision:
        """Red when the whole interval is worse than −block_limit, green when it is all better
        than −green_limit; otherwise continue (never before min_samples). Once every sample is
        scored the interval is exact, and a value between the two limits is amber."""
        interval = self._interval
        if interval is None:
            return "continue"
        exhausted = interval.n == len(self.order)
        if not exhausted and interval.n < self._min_samples:
            return "continue"
        if interval.high < -block_limit:
            return "red"
        if interval.low > -green_limit:
            return "green"
        return "amber" if exhausted else "continue"

    def _rho_bounds(self, max_change: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Honest per-sample bounds of ρ from the metric's range, and the assumed largest change."""
        unit_low, unit_high = self._spec.unit_range
        # An empty sample (den 0) has num 0 whatever the range: its ρ is fixed.
        with np.errstate(invalid="ignore"):
            floor = (np.where(self._den > 0, self._den * unit_low, 0.0) - self._base_num) / self._weights
            ceiling = (np.where(self._den > 0, self._den * unit_high, 0.0) - self._base_num) / self._weights
        allowed_change = max_change * np.abs(self._base_num) / self._weights
        return floor, ceiling, allowed_change

    def _chunk_rho(
        self, num_chunk: Sequence[float] | np.ndarray, den_chunk: Sequence[float] | np.ndarray
    ) -> np.ndarray:
        num, den = np.asarray(num_chunk, dtype=np.float64), np.asarray(den_chunk, dtype=np.float64)
        positions = slice(self.n, self.n + len(num))
        if num.shape != den.shape or num.ndim != 1 or self.n + len(num) > len(self.order):
            raise ValueError("a chunk is two paired arrays that fit in the samples not yet scored")
        if not np.allclose(den, self._den[positions], rtol=1e-9, atol=0):
            raise ValueError("candidate and baseline denominators differ: sampling needs paired samples")
        rho = (num - self._base_num[positions]) / self._weights[positions]
        floor, ceiling = self._honest[0][positions], self._honest[1][positions]
        slack = _BOUND_TOLERANCE * (1.0 + np.abs(rho))
        if ((rho < floor - slack) | (rho > ceiling + slack)).any():
            raise ValueError(f"candidate values outside the range of {self._spec.label}")
        return np.clip(rho, floor, ceiling)

    def _observed_total(self) -> float:
        return float(np.dot(self._rho, self._weights[: self.n]))

    def _honest_total_range(self) -> tuple[float, float]:
        unseen = slice(self.n, None)
        floor, ceiling = self._honest
        observed = self._observed_total()
        return (
            observed + float(np.dot(self._weights[unseen], floor[unseen])),
            observed + float(np.dot(self._weights[unseen], ceiling[unseen])),
        )

    def _delta_range(self, low_total: float, high_total: float) -> tuple[float, float]:
        """Relative deltas at two totals of d; the delta is monotone in the total."""
        totals = self._base_total + np.array([low_total, high_total])
        with np.errstate(over="ignore", invalid="ignore"):
            baseline = self._spec.value(self._base_total, self._den_total)
            deltas = self._spec.change(self._spec.value(totals, self._den_total), baseline)
        return float(deltas.min()), float(deltas.max())


def _validated_order(order: Sequence[int] | np.ndarray, codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    permutation = np.asarray(order, dtype=np.int64)
    if not np.array_equal(np.sort(permutation), np.arange(len(codes))):
        raise ValueError("order must be a permutation of all sample indices")
    clock = _ScheduleClock(codes, weights)
    for unit in permutation:
        if clock.next_category() != codes[unit]:
            raise ValueError("order does not follow the sampling design: build it with sampling_order()")
        clock.draw(unit)
    return permutation


def _members(applies_to: Sequence[int] | np.ndarray | None, design_size: int, n: int) -> np.ndarray:
    members = np.arange(design_size) if applies_to is None else np.asarray(applies_to, dtype=np.int64)
    if len(members) != n or (np.diff(members) <= 0).any() or members[0] < 0 or members[-1] >= design_size:
        raise ValueError("the baseline values must be those of increasing indices into the design's samples")
    return members


def _restricted(order: np.ndarray, members: np.ndarray) -> np.ndarray:
    """The design's order restricted to `members`, as indices into them."""
    index = np.full(len(order), -1, dtype=np.int64)
    index[members] = np.arange(len(members))
    drawn = index[order]
    return drawn[drawn >= 0]


class _OneSidedBound:
    """Lower confidence bound of D = Σ_j w_j ρ_j, with the fallback of the module doc."""

    def __init__(self, assumed_floor: np.ndarray, honest_floor: np.ndarray, ceiling: np.ndarray) -> None:
        self._assumed_floor = assumed_floor
        self._honest_floor = honest_floor
        self._ceiling = ceiling
        self._assumption_holds = True

    def update(self, rho: np.ndarray, weights: np.ndarray, strata: np.ndarray, alpha: float) -> float:
        if self._assumption_holds and _breaks(rho, self._assumed_floor[: len(rho)]):
            self._assumption_holds = False
        floor = self._assumed_floor if self._assumption_holds else self._honest_floor
        return _total_lower_bound(rho, _Draws(weights, strata, len(rho)), floor, self._ceiling, alpha)


def _breaks(rho: np.ndarray, floor: np.ndarray) -> bool:
    return bool((rho < floor - _BOUND_TOLERANCE * (1.0 + np.abs(floor))).any())


class _Draws:
    """The design seen after t draws: all N units in draw order, and per-category running sums."""

    def __init__(self, weights: np.ndarray, strata: np.ndarray, t: int) -> None:
        self.weights, self.strata, self.t = weights, strata, t
        self.n_strata = int(strata.max()) + 1
        self.category_weight = np.bincount(strata, weights=weights, minlength=self.n_strata)
        self.drawn_weight = self.running_sums(weights[:t])

    def running_sums(self, values: np.ndarray) -> np.ndarray:
        """(t + 1) × categories: row k sums `values` of the first k draws, category by category."""
        per_draw = np.zeros((self.t + 1, self.n_strata))
        per_draw[np.arange(1, self.t + 1), self.strata[: self.t]] = values
        return np.cumsum(per_draw, axis=0)

    def before_each_draw(self, sums: np.ndarray) -> np.ndarray:
        """For draw i, its category's entry of the running sums over the draws before it."""
        return sums[np.arange(self.t), self.strata[: self.t]]

    def unseen_totals(self, values: np.ndarray) -> np.ndarray:
        """(t + 1) × categories: Σ w·value over the units not yet drawn; +inf where one is +inf."""
        finite = np.isfinite(values)
        contribution = self.weights * np.where(finite, values, 0.0)
        unseen = np.bincount(self.strata, weights=contribution, minlength=self.n_strata)
        unseen = unseen - self.running_sums(contribution[: self.t])
        unbounded = np.bincount(self.strata, weights=~finite, minlength=self.n_strata)
        unbounded = unbounded - self.running_sums((~finite[: self.t]).astype(np.float64))
        return np.where(unbounded > 0, np.inf, unseen)


def _total_lower_bound(rho: np.ndarray, draws: _Draws, floor: np.ndarray, ceiling: np.ndarray, alpha: float) -> float:
    """One-sided (1 − alpha) lower bound of Σ_j w_j ρ_j over all N units after len(rho) draws.

    The bound at every earlier draw is valid too, so the largest of them is returned (the running
    intersection). floor and ceiling bound ρ unit by unit, in draw order.
    """
    fan_floor = float(floor.min())
    if not math.isfinite(fan_floor):
        return -math.inf
    log_threshold = math.log(1.0 / alpha)
    bet, gain = _bets_and_gains(rho, draws, fan_floor, log_threshold)
    unseen_before = draws.category_weight[draws.strata[: draws.t]] - draws.before_each_draw(draws.drawn_weight)
    seen = draws.running_sums(draws.weights[: draws.t] * rho)
    gain = gain + bet * draws.before_each_draw(seen) / unseen_before
    slopes = draws.running_sums(bet / unseen_before)
    budgets = np.concatenate([[0.0], np.cumsum(gain)]) - log_threshold
    low = seen + draws.unseen_totals(floor)
    high = seen + draws.unseen_totals(ceiling)
    return float(_largest_rejected_totals(slopes, low, high, budgets).max())


def _bets_and_gains(
    rho: np.ndarray, draws: _Draws, fan_floor: float, log_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each draw's predictable bet η_i = λ_i / s_i and its term η_i ρ̃_i − ψ(λ_i) ξ_i² of log M."""
    count = np.arange(1, draws.t + 1)
    mean_before = _exclusive_cumsum(rho) / count
    scale = mean_before - fan_floor
    capped = np.minimum(rho, mean_before + scale)
    xi = (capped - mean_before) / scale
    variance_before = (PRIOR_VARIANCE + _exclusive_cumsum(xi**2)) / count
    lam = np.minimum(np.sqrt(2.0 * log_threshold / (variance_before * count * np.log1p(count))), LAMBDA_CAP)
    bet = lam / scale
    return bet, bet * capped - (-np.log1p(-lam) - lam) * xi**2


def _exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(values)])[:-1]


def _largest_rejected_totals(slopes: np.ndarray, low: np.ndarray, high: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Row by row: the largest m such that every split Σ_h D_h = m, low ≤ D ≤ high, keeps
    Σ_h slopes_h·D_h ≤ budget.

    The maximum of Σ slopes_h·D_h at a given total fills the steepest categories first, so it is
    concave and piecewise linear in m: fill in that order until the budget runs out.
    """
    rows = np.arange(len(budgets))
    steepest = np.argsort(-slopes, axis=1, kind="stable")
    slope = np.take_along_axis(slopes, steepest, axis=1)
    room = np.take_along_axis(high - low, steepest, axis=1)
    cost = slope * np.where(slope > 0, room, 0.0)
    left = budgets - (slopes * low).sum(axis=1)
    cost_before = _exclusive_cumsum_rows(cost)
    runs_out = (cost_before + cost > left[:, None]) & (slope > 0)
    stops = runs_out.any(axis=1)
    where = runs_out.argmax(axis=1)
    partial = (left - cost_before[rows, where]) / np.where(stops, slope[rows, where], 1.0)
    filled = np.where(stops, _exclusive_cumsum_rows(room)[rows, where] + partial, room.sum(axis=1))
    return low.sum(axis=1) + np.where(left < 0, 0.0, filled)


def _exclusive_cumsum_rows(values: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((len(values), 1)), np.cumsum(values[:, :-1], axis=1)], axis=1)
