"""Judge benchmark: call throughput against a local endpoint with simulated latency, calls saved by
the judgement cache, and calibration of the pairwise verdict with simulated biased, noisy judges.

Run: python bench/judge.py [--latency 0.2] [--trials 1000]

Throughput: a local OpenAI-compatible server sleeps `latency` seconds per call; the client makes
calls one at a time, then at its configured concurrency, and a pairwise judging of 50 samples is run
twice on one cache (the second run should make no call).

Calibration: per sample a latent quality difference d ~ N(μ, spread) between candidate and baseline
answers; the judge sees d + position bias b (towards whichever answer comes first) + N(0, σ) noise
and answers [[A]] / [[B]] beyond ±τ, else [[C]], once per order; the orders are combined as
`judges.judging` does. The true preference is the expected combined value, computed exactly (μ found
by bisection for −2 × the limit). Targets at n = 500: false red ≤ 1 % when nothing changed, ≥ 95 % red
at a true preference of −2 × the limit.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from scipy import optimize, stats

# Run as a script from anywhere: make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driftboard.outbound import OutboundPolicy  # noqa: E402
from evals.scoring.judges import (  # noqa: E402
    EndpointSettings,
    InMemoryJudgementStore,
    JudgedItem,
    JudgeRequest,
    JudgeSettings,
    OpenAIJudge,
    judge_items,
)
from evals.scoring.judges.preference import (  # noqa: E402
    DEFAULT_PREFERENCE_LIMIT,
    preference_interval,
    preference_outcome,
)
from evals.scoring.judges.remote import DEFAULT_CONCURRENCY  # noqa: E402

N_SAMPLES = 500
N_BOOT = 1000
# The bench's judge is a local server: loopback is listed for it.
LOCAL = OutboundPolicy(allowed_hosts=("127.0.0.1",))
REQUEST = JudgeRequest(messages=[{"role": "user", "content": "Rate."}], verdicts=("1",), verdict_prefix="Rating: [[")


def serve(latency: float) -> tuple[ThreadingHTTPServer, str]:
    reply = json.dumps(
        {"choices": [{"message": {"role": "assistant", "content": "Tie. [[C]] Rating: [[5]]"}}], "usage": {}}
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(latency)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def calls_per_second(url: str, concurrency: int, calls: int) -> float:
    judge = OpenAIJudge(EndpointSettings(url=url, model="bench", concurrency=concurrency), outbound=LOCAL)
    started = time.perf_counter()
    judge.complete_many([REQUEST] * calls)
    return calls / (time.perf_counter() - started)


def print_throughput(latency: float) -> None:
    server, url = serve(latency)
    try:
        sequential = calls_per_second(url, 1, 10)
        concurrent = calls_per_second(url, DEFAULT_CONCURRENCY, 8 * DEFAULT_CONCURRENCY)
        store = InMemoryJudgementStore()
        items = [JudgedItem(question=f"q{i}", answer=f"a{i}", baseline_answer=f"b{i}") for i in range(50)]
        judge = OpenAIJudge(EndpointSettings(url=url, model="bench"), outbound=LOCAL)
        first = judge_items(judge, items, store, JudgeSettings(mode="pairwise"))
        again = judge_items(judge, items, store, JudgeSettings(mode="pairwise"))
    finally:
        server.shutdown()
    print(f"Judge throughput, {1000 * latency:.0f} ms per call (local server)")
    print(f"{'setting':34} {'calls/s':>8} {'ratio':>6}")
    print(f"{'one call at a time':34} {sequential:8.1f} {1.0:6.1f}")
    print(f"{f'concurrency {DEFAULT_CONCURRENCY}':34} {concurrent:8.1f} {concurrent / sequential:6.1f}")
    print(
        f"cache: pairwise, 50 samples × 2 orders: first run {first.calls} calls, re-run {again.calls} calls "
        f"({again.reused} reused, {first.calls - again.calls} saved)"
    )


@dataclass(frozen=True)
class SimulatedJudge:
    name: str
    bias: float
    noise: float
    tie: float

    def per_order(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """P(candidate wins), P(candidate loses) in order 1 (candidate first) and order 2, given d."""
        b, s, t = self.bias, self.noise, self.tie
        first_win, first_lose = stats.norm.cdf((d + b - t) / s), stats.norm.cdf((-t - d - b) / s)
        second_win, second_lose = stats.norm.cdf((d - b - t) / s), stats.norm.cdf((-t - d + b) / s)
        return first_win, first_lose, second_win, second_lose

    def true_preference(self, mu: float, spread: float) -> float:
        nodes, weights = np.polynomial.hermite_e.hermegauss(80)
        d = mu + spread * nodes
        first_win, first_lose, second_win, second_lose = self.per_order(d)
        return float(np.sum(weights * (first_win * second_win - first_lose * second_lose)) / np.sum(weights))

    def simulate(self, rng: np.random.Generator, n: int, mu: float, spread: float) -> np.ndarray:
        d = mu + spread * rng.standard_normal(n)
        first = self._verdicts(rng, d + self.bias)
        second = -self._verdicts(rng, -d + self.bias)
        return np.where(first == second, first, 0.0)

    def _verdicts(self, rng: np.random.Generator, signal: np.ndarray) -> np.ndarray:
        """+1 when the first-shown answer wins, −1 when it loses, 0 for a tie."""
        seen = signal + self.noise * rng.standard_normal(len(signal))
        return np.where(seen > self.tie, 1.0, np.where(seen < -self.tie, -1.0, 0.0))


JUDGES = (
    SimulatedJudge("fair, low noise", bias=0.0, noise=0.5, tie=0.3),
    SimulatedJudge("position-biased", bias=0.8, noise=1.0, tie=0.3),
    SimulatedJudge("strongly biased, noisy", bias=1.5, noise=2.0, tie=0.5),
)


def mu_for(judge: SimulatedJudge, target: float, spread: float) -> float:
    return optimize.brentq(lambda mu: judge.true_preference(mu, spread) - target, -20, 20)


def outcome_rates(
    judge: SimulatedJudge, rng: np.random.Generator, trials: int, mu: float, spread: float
) -> tuple[float, float]:
    """Shares of amber and red verdicts over `trials` simulated golden sets."""
    counts = {"green": 0, "amber": 0, "red": 0}
    for trial in range(trials):
        preference = preference_interval(judge.simulate(rng, N_SAMPLES, mu, spread), n_boot=N_BOOT, seed=trial)
        counts[preference_outcome(preference, DEFAULT_PREFERENCE_LIMIT)] += 1
    return counts["amber"] / trials, counts["red"] / trials


def print_calibration(trials: int) -> None:
    rng = np.random.default_rng(0)
    limit = DEFAULT_PREFERENCE_LIMIT
    print(f"\nPairwise verdict calibration: n = {N_SAMPLES}, {trials} trials, limit {limit:g}, {N_BOOT} resamples")
    print(f"{'judge':24} {'scenario':34} {'true pref':>9} {'amber':>7} {'red':>7}  {'target':9} pass")
    scenarios = (
        ("unchanged weights (same answers)", 0.0, 0.0, "≤ 1 %"),
        ("new answers, same quality", 0.0, 1.0, "≤ 1 %"),
        ("worse by the limit", -limit, 1.0, "≈ 2.5 %"),
        ("worse by 2 × limit", -2 * limit, 1.0, "≥ 95 %"),
    )
    for judge in JUDGES:
        for label, target, spread, goal in scenarios:
            mu = mu_for(judge, target, spread) if target else 0.0
            truth = judge.true_preference(mu, spread)
            amber, red = outcome_rates(judge, rng, trials, mu, spread)
            passed = {"≤": red <= 0.01, "≈": red <= 0.05, "≥": red >= 0.95}[goal[0]]
            print(
                f"{judge.name:24} {label:34} {truth:+9.3f} {100 * amber:6.1f}% {100 * red:6.1f}%  {goal:9} "
                f"{'yes' if passed else 'NO'}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per simulated judge call")
    parser.add_argument("--trials", type=int, default=1000, help="simulated golden sets per scenario")
    args = parser.parse_args()
    print_throughput(args.latency)
    print_calibration(args.trials)


if __name__ == "__main__":
    main()
