"""Sampled evaluation: how much of the golden set a sequential verdict needs, and how often it
agrees with scoring everything.

Run: python bench/sampling.py

Each case simulates golden sets of paired bits-per-byte scores with a known truth
(`bench.calibration.simulate_scores`), scores the candidate chunk by chunk in the order of
`SequentialMonitor.start` until `decide` stops, and compares the decision with the reference run
in the same process: `compare` + `classify` on the full set. Fractions used are of samples and
of bytes (bytes are what forward passes cost; the size-weighted order draws long texts first).

The two verdicts answer slightly different questions: the sequential interval is about the value
on this golden set, the full-set interval is a bootstrap over golden sets. When the full-set value
sits within about one bootstrap half-width of the limit, the sequential verdict can be red where
the full one is amber.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Run as a script from anywhere: make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.calibration import LIMIT, RELATIVE_BLOCK, SPEC, SimulatedScores, simulate_scores  # noqa: E402
from evals.drift import classify, compare  # noqa: E402
from evals.sequential import SequentialMonitor  # noqa: E402

CHUNK = 10
MIN_SAMPLES = 50


@dataclass(frozen=True)
class CaseResult:
    decision: str
    full_verdict: str
    samples_used: float
    bytes_used: float


@dataclass(frozen=True)
class Target:
    label: str
    passes: Callable[[list[CaseResult]], bool]


def _decisive(results: list[CaseResult]) -> bool:
    return _mean(results, "samples_used") <= 0.25 and _agreement(results) >= 0.99


DECISIVE = Target("samples ≤ 25 %, agree ≥ 99 %", _decisive)
NO_FALSE_RED = Target("red ≤ 1 %", lambda results: _rate(results, "red") <= 0.01)
INFO = Target("none", lambda results: True)


@dataclass(frozen=True)
class Case:
    name: str
    shift: float
    noise: float
    target: Target


CASES = (
    Case("re-scored identical weights", 0.0, 0.0, NO_FALSE_RED),
    Case("unchanged weights, 3 % noise", 0.0, 0.03, NO_FALSE_RED),
    Case("unchanged weights, 10 % noise", 0.0, 0.10, NO_FALSE_RED),
    Case("better by 2 %", -0.02, 0.03, DECISIVE),
    Case("better by 5 %", -0.05, 0.03, DECISIVE),
    Case("worse by 2× the limit (4 %)", 0.04, 0.03, DECISIVE),
    Case("worse by 2× the limit, 10 % noise", 0.04, 0.10, DECISIVE),
    Case("worse by 8 %", 0.08, 0.03, DECISIVE),
    Case("worse by the limit (2 %)", 0.02, 0.03, INFO),
)


def simulate_cases(case: Case, *, n: int = 1000, trials: int = 150, seed: int = 0) -> list[CaseResult]:
    """Sequential and full-set verdicts of `trials` simulated golden sets of n samples."""
    rng = np.random.default_rng(seed)
    results = []
    for trial in range(trials):
        scores = simulate_scores(rng, n, shift=case.shift, noise=case.noise)
        decision, scored = sequential_verdict(scores, seed=trial)
        results.append(
            CaseResult(
                decision=decision,
                full_verdict=full_verdict(scores, seed=trial),
                samples_used=len(scored) / n,
                bytes_used=float(scores.base_den[scored].sum() / scores.base_den.sum()),
            )
        )
    return results


def sequential_verdict(scores: SimulatedScores, *, seed: int) -> tuple[str, np.ndarray]:
    """The monitor's decision and the indices of the samples it needed."""
    monitor = SequentialMonitor.start(
        SPEC, scores.base_num, scores.base_den, scores.categories, seed=seed, min_samples=MIN_SAMPLES
    )
    decision = "continue"
    for start in range(0, len(monitor.order), CHUNK):
        chunk = monitor.order[start : start + CHUNK]
        monitor.update(scores.cand_num[chunk], scores.cand_den[chunk])
        decision = monitor.decide(LIMIT, LIMIT)
        if decision != "continue":
            break
    return decision, monitor.order[: monitor.n]


def full_verdict(scores: SimulatedScores, *, seed: int) -> str:
    comparison = compare(SPEC, scores.cand_num, scores.cand_den, scores.base_num, scores.base_den, seed=seed)
    return classify(comparison, [RELATIVE_BLOCK]).outcome


def _rate(results: list[CaseResult], decision: str) -> float:
    return sum(r.decision == decision for r in results) / len(results)


def _mean(results: list[CaseResult], field: str) -> float:
    return float(np.mean([getattr(r, field) for r in results]))


def _agreement(results: list[CaseResult]) -> float:
    return sum(r.decision == r.full_verdict for r in results) / len(results)


def main() -> None:
    started = time.perf_counter()
    n, trials = 1000, 150
    print(f"chunks of {CHUNK}, at least {MIN_SAMPLES} samples, green and block limits {LIMIT:.0%}")
    print(
        f"{'case':34} {'N':>5} {'trials':>6} {'green':>6} {'red':>6} {'amber@N':>7} "
        f"{'samples':>8} {'bytes':>6} {'agree':>6}  {'target':28} pass"
    )
    decisive: list[CaseResult] = []
    for seed, case in enumerate(CASES):
        results = simulate_cases(case, n=n, trials=trials, seed=seed)
        decisive += results if case.target is DECISIVE else []
        print(
            f"{case.name:34} {n:>5} {trials:>6} {_rate(results, 'green'):>6.1%} {_rate(results, 'red'):>6.1%} "
            f"{_rate(results, 'amber'):>7.1%} {_mean(results, 'samples_used'):>8.1%} "
            f"{_mean(results, 'bytes_used'):>6.1%} {_agreement(results):>6.1%}  {case.target.label:28} "
            f"{'yes' if case.target.passes(results) else 'NO'}"
        )
    print(
        f"{'all decisive cases':34} {n:>5} {len(decisive):>6} {'':>6} {'':>6} {'':>7} "
        f"{_mean(decisive, 'samples_used'):>8.1%} {_mean(decisive, 'bytes_used'):>6.1%} {_agreement(decisive):>6.1%}  "
        f"{DECISIVE.label:28} {'yes' if DECISIVE.passes(decisive) else 'NO'}"
    )
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
