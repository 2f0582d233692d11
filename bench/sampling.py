"""Sampled evaluation: how much of the golden set a sequential verdict needs, and how often it
agrees with scoring everything.

Run: python bench/sampling.py  [--part simulation|demo] [--demo-dir DIR]

Simulation part: each case simulates golden sets of paired bits-per-byte scores with a known truth
(`bench.calibration.simulate_scores`), scores the candidate chunk by chunk in the order of
`SequentialMonitor.start` until `decide` stops, and compares the decision with the reference run
in the same process: `compare` + `classify` on the full set. Fractions used are of samples and
of bytes (bytes are what forward passes cost; the size-weighted order draws long texts first).

The two verdicts answer slightly different questions: the sequential interval is about the value
on this golden set, the full-set interval is a bootstrap over golden sets. When the full-set value
sits within about one bootstrap half-width of the limit, the sequential verdict can be red where
the full one is amber.

Demo part: the three demo models (`evals.scoring.demo_models`, preset "test", built in a temporary
folder unless --demo-dir names one) are scored by the scoring engine itself. The reference run
is the candidate scored on the whole golden set in one call; the sequential run scores the
order of `SequentialMonitor.start` a chunk at a time (a fresh result store each time, so nothing
is reused) until the monitor stops, for several seeds and two designs (chunk / minimum).
Forward passes and seconds are those of the scoring engine plus the monitor, as in a worker.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Run as a script from anywhere: make the project importable; never reach a model hub.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.calibration import LIMIT, RELATIVE_BLOCK, SPEC, SimulatedScores, simulate_scores  # noqa: E402
from evals.scoring.cache import InMemoryResultStore, score_samples  # noqa: E402
from evals.scoring.demo_models import build_demo_models  # noqa: E402
from evals.scoring.drift import ThresholdSpec, classify, compare  # noqa: E402
from evals.scoring.loading import LoadedModel, load_model  # noqa: E402
from evals.scoring.sequential import SequentialMonitor  # noqa: E402

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


def simulation_part() -> None:
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


DEMO_SEEDS = 5
DEMO_DESIGNS = ((20, 40), (50, 100))  # (chunk size, minimum samples): a small one and the family defaults
WARM_UP_SAMPLES = 8
REFERENCE_REPEATS = 3
# The full-set delta lies 0.5 % beyond this fraction of itself: a straddling interval until the end.
NEAR_LIMIT = 0.995


@dataclass(frozen=True)
class DemoCase:
    name: str
    candidate: str
    limit: float | None  # relative block limit; None: just inside the candidate's own full-set |delta|


DEMO_CASES = (
    DemoCase("base re-scored (identical weights)", "base", LIMIT),
    DemoCase("improved", "improved", LIMIT),
    DemoCase("drifted", "drifted", LIMIT),
    DemoCase("drifted, limit near its delta", "drifted", None),
)


@dataclass(frozen=True)
class Scored:
    num: np.ndarray
    den: np.ndarray
    forward_passes: int
    seconds: float


@dataclass(frozen=True)
class SequentialRun:
    decision: str
    samples: int
    forward_passes: int
    seconds: float

    def verdict(self, n: int, full_verdict: str) -> str:
        """What the service reports: the monitor's decision if it stopped early, else the full-set verdict."""
        return self.decision if self.samples < n else full_verdict


def score_full(lm: LoadedModel, samples: list[dict]) -> Scored:
    """The reference: every golden sample in one call, nothing reused; the median of a few timings."""
    score_samples(lm, samples[:WARM_UP_SAMPLES], InMemoryResultStore())
    timings = []
    for _ in range(REFERENCE_REPEATS):
        started = time.perf_counter()
        scored = score_samples(lm, samples, InMemoryResultStore())
        timings.append(time.perf_counter() - started)
    seconds = float(np.median(timings))
    return Scored(
        scored.values("causal-nll")["nll"] / math.log(2),
        scored.values("causal-nll")["bytes"].astype(np.float64),
        scored.forward_passes,
        seconds,
    )


def score_sequential(
    lm: LoadedModel, samples: list[dict], base: Scored, *, seed: int, chunk: int, min_samples: int, limit: float
) -> SequentialRun:
    started = time.perf_counter()
    categories = [sample["category"] for sample in samples]
    monitor = SequentialMonitor.start(SPEC, base.num, base.den, categories, seed=seed, min_samples=min_samples)
    decision, passes = "continue", 0
    for start in range(0, len(monitor.order), chunk):
        scored = score_samples(lm, [samples[i] for i in monitor.order[start : start + chunk]], InMemoryResultStore())
        passes += scored.forward_passes
        monitor.update(scored.values("causal-nll")["nll"] / math.log(2), scored.values("causal-nll")["bytes"])
        decision = monitor.decide(limit, limit)
        if decision != "continue":
            break
    return SequentialRun(decision, monitor.n, passes, time.perf_counter() - started)


def demo_verdict(candidate: Scored, base: Scored, limit: float) -> str:
    block = ThresholdSpec(id="demo", version=1, metric=SPEC.name, rule="relative", limit=limit, severity="block")
    return classify(compare(SPEC, candidate.num, candidate.den, base.num, base.den), [block]).outcome


def demo_part(demo_dir: Path | None) -> None:
    """On --demo-dir (built there unless it holds a build already), else in a temporary folder."""
    if demo_dir is None:
        with tempfile.TemporaryDirectory(prefix="driftboard-demo-") as folder:
            build_demo_models(Path(folder), preset="test", log=lambda _line: None)
            demo_tables(Path(folder))
        return
    if not (demo_dir / "golden.jsonl").exists():
        build_demo_models(demo_dir, preset="test", log=lambda _line: None)
    demo_tables(demo_dir)


def demo_tables(folder: Path) -> None:
    samples = [json.loads(line) for line in (folder / "golden.jsonl").read_text().splitlines()]
    models = {name: load_model(folder / name, kind="causal-lm") for name in ("base", "improved", "drifted")}
    full = {name: score_full(lm, samples) for name, lm in models.items()}
    print(f"demo models (preset test), golden set of {len(samples)} samples, {DEMO_SEEDS} seeds per row")
    print(
        f"{'case':34} {'chunk/min':>9} {'limit':>6} {'full':>5} {'sampled':>9} {'agree':>6} {'early':>6} "
        f"{'samples':>8} {'passes':>13} {'seconds':>14} {'saved s':>7}"
    )
    for case in DEMO_CASES:
        candidate = full[case.candidate]
        limit = case.limit if case.limit is not None else -NEAR_LIMIT * _delta(candidate, full["base"])
        verdict = demo_verdict(candidate, full["base"], limit)
        for chunk, min_samples in DEMO_DESIGNS:
            runs = [
                score_sequential(
                    models[case.candidate],
                    samples,
                    full["base"],
                    seed=seed,
                    chunk=chunk,
                    min_samples=min_samples,
                    limit=limit,
                )
                for seed in range(DEMO_SEEDS)
            ]
            _print_demo_row(case, chunk, min_samples, limit, verdict, runs, candidate, len(samples))


def _delta(candidate: Scored, base: Scored) -> float:
    value = SPEC.value(candidate.num.sum(), candidate.den.sum())
    return float(SPEC.change(value, SPEC.value(base.num.sum(), base.den.sum())))


def _print_demo_row(
    case: DemoCase,
    chunk: int,
    min_samples: int,
    limit: float,
    verdict: str,
    runs: list[SequentialRun],
    reference: Scored,
    n: int,
) -> None:
    decisions = [run.verdict(n, verdict) for run in runs]
    passes = float(np.mean([run.forward_passes for run in runs]))
    seconds = float(np.mean([run.seconds for run in runs]))
    print(
        f"{case.name:34} {f'{chunk}/{min_samples}':>9} {limit:>6.2%} {verdict:>5} {'/'.join(sorted(set(decisions))):>9} "
        f"{np.mean([d == verdict for d in decisions]):>6.0%} {np.mean([r.samples < n for r in runs]):>6.0%} "
        f"{np.mean([run.samples for run in runs]) / n:>8.1%} "
        f"{f'{passes:.0f}/{reference.forward_passes} {passes / reference.forward_passes:.0%}':>13} "
        f"{f'{seconds:.2f}/{reference.seconds:.2f} {seconds / reference.seconds:.0%}':>14} "
        f"{reference.seconds - seconds:>7.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "simulation", "demo"), default="all")
    parser.add_argument("--demo-dir", type=Path, help="reuse (or build into) this demo folder")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.part in ("all", "simulation"):
        simulation_part()
    if args.part in ("all", "demo"):
        print()
        demo_part(args.demo_dir)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
