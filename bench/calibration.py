"""Calibration of drift verdicts on simulated scores with a known truth.

Run: python bench/calibration.py

Each scenario simulates many golden sets of paired per-sample bits-per-byte scores, runs
`evals.scoring.drift.compare` and `classify`, and counts green / amber / red against the targets: an
unchanged candidate is rarely flagged, a degradation of twice the 2 % limit is caught. A second
table checks the coverage of the bootstrap intervals against the true values, and how often the
paired p-value falls under 0.05 when nothing changed.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Run as a script from anywhere: make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.scoring.drift import ThresholdSpec, classify, compare  # noqa: E402
from evals.scoring.scorers import METRICS  # noqa: E402

SPEC = METRICS["bits_per_byte"]
LIMIT = 0.02
CATEGORIES = ("prose", "code", "dialogue")
# Category difficulty: code is easier to predict per byte than dialogue.
CATEGORY_BPB = np.array([1.0, 0.7, 1.2])
BYTES_LOG_MEDIAN, BYTES_LOG_SIGMA = math.log(400), 0.6
BPB_LOG_SIGMA = 0.3
NOISE_DF = 5
HISTORY_SIZE, HISTORY_SPREAD = 10, 0.01
RELATIVE_BLOCK = ThresholdSpec(
    id="relative", version=1, metric=SPEC.name, rule="relative", limit=LIMIT, severity="block"
)
BAND_WARN = ThresholdSpec(id="band", version=1, metric=SPEC.name, rule="band", limit=3.0, severity="warn")


@dataclass(frozen=True)
class SimulatedScores:
    cand_num: np.ndarray
    cand_den: np.ndarray
    base_num: np.ndarray
    base_den: np.ndarray
    categories: np.ndarray
    true_delta: float
    true_candidate: float


def simulate_scores(rng: np.random.Generator, n: int, *, shift: float, noise: float) -> SimulatedScores:
    """Paired per-sample scores as the scorer returns them: num = NLL bits, den = UTF-8 bytes.

    Bytes are lognormal; a sample's baseline bits per byte is lognormal times its category's
    difficulty, so per-sample NLL has a heavy right tail. The candidate's NLL is the baseline's
    times (1 + shift + noise·t₅): per-sample changes that follow the baseline, with heavy-ish
    tails. The truth is that of the population the golden set is drawn from: the relative delta
    is −shift and the candidate value E[bpb]·(1 + shift).
    """
    category = rng.integers(0, len(CATEGORIES), n)
    n_bytes = np.maximum(1.0, np.round(rng.lognormal(BYTES_LOG_MEDIAN, BYTES_LOG_SIGMA, n)))
    base_bpb = CATEGORY_BPB[category] * rng.lognormal(0.0, BPB_LOG_SIGMA, n)
    change = noise * rng.standard_t(NOISE_DF, n) / math.sqrt(NOISE_DF / (NOISE_DF - 2))
    base_bits = base_bpb * n_bytes
    cand_bits = base_bits * np.maximum(1.0 + shift + change, 0.0)
    mean_bpb = CATEGORY_BPB.mean() * math.exp(BPB_LOG_SIGMA**2 / 2)
    return SimulatedScores(
        cand_num=cand_bits,
        cand_den=n_bytes,
        base_num=base_bits,
        base_den=n_bytes,
        categories=np.asarray(CATEGORIES)[category],
        true_delta=-shift,
        true_candidate=mean_bpb * (1.0 + shift),
    )


def production_history(rng: np.random.Generator, value: float) -> list[float]:
    """Values of past production snapshots: version-to-version spread around the baseline."""
    return (value * (1.0 + HISTORY_SPREAD * rng.standard_normal(HISTORY_SIZE))).tolist()


@dataclass(frozen=True)
class Target:
    label: str
    passes: Callable[[dict[str, float]], bool]


NO_FALSE_ALARM = Target("red ≤ 1 %, amber ≤ 5 %", lambda rates: rates["red"] <= 0.01 and rates["amber"] <= 0.05)
CAUGHT = Target("red ≥ 95 %", lambda rates: rates["red"] >= 0.95)
STRADDLES = Target("none: at the limit", lambda rates: True)
BAND_POWER = Target("none: power of the band", lambda rates: True)


@dataclass(frozen=True)
class Scenario:
    name: str
    n: int
    trials: int
    shift: float
    noise: float
    target: Target
    thresholds: Sequence[ThresholdSpec] = (RELATIVE_BLOCK,)
    with_history: bool = False
    robust: bool = False


SCENARIOS = (
    Scenario("re-scored identical weights", 1000, 200, shift=0.0, noise=0.0, target=NO_FALSE_ALARM),
    Scenario("unchanged weights, 3 % noise", 200, 400, shift=0.0, noise=0.03, target=NO_FALSE_ALARM),
    Scenario("unchanged weights, 3 % noise", 1000, 400, shift=0.0, noise=0.03, target=NO_FALSE_ALARM),
    Scenario("unchanged weights, 10 % noise", 200, 400, shift=0.0, noise=0.10, target=NO_FALSE_ALARM),
    Scenario("worse by 2× the limit (4 %)", 1000, 400, shift=0.04, noise=0.03, target=CAUGHT),
    Scenario("worse by 2× the limit, 10 % noise", 1000, 300, shift=0.04, noise=0.10, target=CAUGHT),
    Scenario("worse by the limit (2 %)", 1000, 300, shift=0.02, noise=0.03, target=STRADDLES),
    Scenario(
        "band: unchanged, 10 past values",
        1000,
        400,
        shift=0.0,
        noise=0.03,
        target=NO_FALSE_ALARM,
        thresholds=(RELATIVE_BLOCK, BAND_WARN),
        with_history=True,
    ),
    Scenario(
        "band (robust): unchanged",
        1000,
        400,
        shift=0.0,
        noise=0.03,
        target=NO_FALSE_ALARM,
        thresholds=(RELATIVE_BLOCK, BAND_WARN),
        with_history=True,
        robust=True,
    ),
    Scenario(
        "band only: worse by 4 %",
        1000,
        300,
        shift=0.04,
        noise=0.03,
        target=BAND_POWER,
        thresholds=(BAND_WARN,),
        with_history=True,
    ),
)


def outcome_rates(scenario: Scenario, rng: np.random.Generator) -> dict[str, float]:
    counts = {"green": 0, "amber": 0, "red": 0}
    for trial in range(scenario.trials):
        scores = simulate_scores(rng, scenario.n, shift=scenario.shift, noise=scenario.noise)
        baseline_value = scores.base_num.sum() / scores.base_den.sum()
        history = production_history(rng, baseline_value) if scenario.with_history else ()
        comparison = compare(
            SPEC,
            scores.cand_num,
            scores.cand_den,
            scores.base_num,
            scores.base_den,
            history=history,
            robust=scenario.robust,
            seed=trial,
        )
        counts[classify(comparison, scenario.thresholds).outcome] += 1
    return {outcome: count / scenario.trials for outcome, count in counts.items()}


@dataclass(frozen=True)
class Coverage:
    n: int
    trials: int
    delta: float
    candidate: float
    null_p_below_05: float


def interval_coverage(rng: np.random.Generator, n: int, trials: int, *, shift: float, noise: float) -> Coverage:
    """Share of 95 % intervals holding the true delta / value; and of p < 0.05 with no change."""
    delta_hits = candidate_hits = null_rejections = 0
    for trial in range(trials):
        scores = simulate_scores(rng, n, shift=shift, noise=noise)
        c = compare(SPEC, scores.cand_num, scores.cand_den, scores.base_num, scores.base_den, seed=trial)
        delta_hits += c.ci_low <= scores.true_delta <= c.ci_high
        candidate_hits += c.cand_ci_low <= scores.true_candidate <= c.cand_ci_high
        null = simulate_scores(rng, n, shift=0.0, noise=noise)
        p = compare(SPEC, null.cand_num, null.cand_den, null.base_num, null.base_den, n_boot=1).p_value
        null_rejections += p < 0.05
    return Coverage(n, trials, delta_hits / trials, candidate_hits / trials, null_rejections / trials)


def print_outcomes(rng: np.random.Generator) -> None:
    print(f"{'scenario':36} {'n':>5} {'trials':>6} {'green':>6} {'amber':>6} {'red':>6}  {'target':24} pass")
    for scenario in SCENARIOS:
        rates = outcome_rates(scenario, rng)
        print(
            f"{scenario.name:36} {scenario.n:>5} {scenario.trials:>6} {rates['green']:>6.1%} {rates['amber']:>6.1%} "
            f"{rates['red']:>6.1%}  {scenario.target.label:24} {'yes' if scenario.target.passes(rates) else 'NO'}"
        )


def print_coverage(rng: np.random.Generator) -> None:
    print(
        f"\n{'n':>5} {'noise':>6} {'trials':>6} {'delta CI':>9} {'value CI':>9} {'p<.05 | no change':>18}  (nominal 95 %, 95 %, 5 %)"
    )
    for n, noise, trials in ((100, 0.03, 400), (300, 0.03, 300), (1000, 0.03, 200), (300, 0.10, 300)):
        cov = interval_coverage(rng, n, trials, shift=LIMIT, noise=noise)
        print(f"{n:>5} {noise:>6.0%} {trials:>6} {cov.delta:>9.1%} {cov.candidate:>9.1%} {cov.null_p_below_05:>18.1%}")


def print_speed(rng: np.random.Generator) -> None:
    """compare() against a plain loop over resamples, the reference, on the same 1,000 samples."""
    scores = simulate_scores(rng, 1000, shift=LIMIT, noise=0.03)
    columns = (scores.cand_num, scores.cand_den, scores.base_num, scores.base_den)
    vectorised = min(_seconds(lambda: compare(SPEC, *columns, n_boot=2000)) for _ in range(7))
    loop = _seconds(lambda: _loop_bootstrap(*columns, n_boot=2000, rng=rng))
    print(f"\ncompare(), 1,000 samples, 2,000 resamples: {1000 * vectorised:.0f} ms")
    print(f"plain loop over the same resamples: {1000 * loop:.0f} ms  (ratio {loop / vectorised:.1f}×)")


def _loop_bootstrap(
    cand_num: np.ndarray, cand_den: np.ndarray, base_num: np.ndarray, base_den: np.ndarray, *, n_boot: int, rng
) -> list[float]:
    deltas = []
    for _ in range(n_boot):
        i = rng.integers(0, len(cand_num), len(cand_num))
        base = base_num[i].sum() / base_den[i].sum()
        deltas.append((base - cand_num[i].sum() / cand_den[i].sum()) / base)
    return deltas


def _seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    started = time.perf_counter()
    rng = np.random.default_rng(20240611)
    print_outcomes(rng)
    print_coverage(rng)
    print_speed(rng)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
