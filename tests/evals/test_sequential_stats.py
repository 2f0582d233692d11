"""Sequential sampled evaluation: the design, the stopping rule and anytime coverage by simulation."""

import math

import numpy as np
import pytest

from evals.scoring.scorers import METRICS
from evals.scoring.sequential import SequentialMonitor, design_weights, sampling_order

BPB = METRICS["bits_per_byte"]
LIMIT = 0.02


def golden_set(rng: np.random.Generator, n: int, *, shift: float, noise: float = 0.03):
    """Paired bits-per-byte scores in three categories of different difficulty."""
    categories = np.array(["prose", "code", "dialogue"])[rng.integers(0, 3, n)]
    difficulty = np.where(categories == "code", 0.7, np.where(categories == "dialogue", 1.2, 1.0))
    n_bytes = np.maximum(1.0, np.round(rng.lognormal(math.log(400), 0.6, n)))
    base_bits = difficulty * rng.lognormal(0.0, 0.3, n) * n_bytes
    cand_bits = base_bits * np.maximum(1.0 + shift + noise * rng.standard_t(5, n), 0.0)
    return cand_bits, n_bytes, base_bits, categories


def population_delta(cand_num: np.ndarray, base_num: np.ndarray) -> float:
    return (base_num.sum() - cand_num.sum()) / base_num.sum()


def run_to_the_end(monitor: SequentialMonitor, cand_num: np.ndarray, den: np.ndarray, chunk: int):
    """Every interval and decision along the whole order."""
    steps = []
    for start in range(0, len(monitor.order), chunk):
        positions = monitor.order[start : start + chunk]
        steps.append((monitor.update(cand_num[positions], den[positions]), monitor.decide(LIMIT, LIMIT)))
    return steps


def test_it_draws_the_same_order_from_the_same_seed():
    categories = ["a", "b", "c"] * 50
    first = sampling_order(categories, seed=11)
    assert np.array_equal(first, sampling_order(categories, seed=11))
    assert not np.array_equal(first, sampling_order(categories, seed=12))
    assert np.array_equal(np.sort(first), np.arange(150))


def test_it_keeps_every_prefix_proportional_across_categories():
    rng = np.random.default_rng(0)
    categories = rng.choice(["a", "b", "c", "d"], p=[0.5, 0.3, 0.15, 0.05], size=600)
    order = sampling_order(categories, seed=1)

    labels = np.array(sorted(set(categories)))
    seen = np.cumsum(categories[order][:, None] == labels[None, :], axis=0)
    expected = np.arange(1, 601)[:, None] * (np.sum(categories[:, None] == labels, axis=0) / 600)
    assert np.abs(seen - expected).max() <= 1.5


def test_it_draws_in_proportion_to_weight_inside_a_category():
    weights = np.array([1.0, 2.0, 7.0])
    first_draws = np.array([sampling_order(["x"] * 3, seed=seed, weights=weights)[0] for seed in range(3000)])
    frequencies = np.bincount(first_draws, minlength=3) / 3000
    assert frequencies == pytest.approx(weights / weights.sum(), abs=4 * math.sqrt(0.25 / 3000))


def test_it_reproduces_its_intervals_from_the_seed():
    cand_num, den, base_num, categories = golden_set(np.random.default_rng(1), 300, shift=0.01)
    runs = [
        run_to_the_end(
            SequentialMonitor.start(BPB, base_num, den, categories, seed=5, min_samples=20), cand_num, den, 30
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_it_never_stops_before_min_samples():
    cand_num, den, base_num, categories = golden_set(np.random.default_rng(2), 400, shift=0.5)
    monitor = SequentialMonitor.start(BPB, base_num, den, categories, seed=3, min_samples=100)
    steps = run_to_the_end(monitor, cand_num, den, chunk=10)

    assert [decision for interval, decision in steps if interval.n < 100] == ["continue"] * 9
    first_red = next(interval.n for interval, decision in steps if decision == "red")
    assert first_red == 100
    # The evidence was there earlier; min_samples held the decision back.
    assert any(interval.high < -LIMIT for interval, _ in steps if interval.n < 100)


def test_it_keeps_going_while_the_interval_straddles_a_limit():
    cand_num, den, base_num, categories = golden_set(np.random.default_rng(3), 300, shift=LIMIT)
    cand_num *= (1.0 + LIMIT) * base_num.sum() / cand_num.sum()  # exactly at the limit
    monitor = SequentialMonitor.start(BPB, base_num, den, categories, seed=4, min_samples=10)
    steps = run_to_the_end(monitor, cand_num, den, chunk=10)

    for interval, decision in steps[:-1]:
        assert interval.low < -LIMIT < interval.high
        assert decision == "continue"
    assert steps[-1][0].low == pytest.approx(-LIMIT)


def test_it_covers_the_population_value_at_all_times():
    rng = np.random.default_rng(4)
    paths, covered, confidence = 150, 0, 0.8
    for path in range(paths):
        cand_num, den, base_num, categories = golden_set(rng, 240, shift=rng.normal(0, 0.03), noise=0.1)
        truth = population_delta(cand_num, base_num)
        monitor = SequentialMonitor.start(
            BPB, base_num, den, categories, seed=path, min_samples=1, confidence=confidence
        )
        steps = run_to_the_end(monitor, cand_num, den, chunk=8)
        covered += all(interval.low - 1e-12 <= truth <= interval.high + 1e-12 for interval, _ in steps)
    assert covered / paths >= confidence


def test_it_collapses_to_the_exact_value_when_every_sample_is_scored():
    cand_num, den, base_num, categories = golden_set(np.random.default_rng(5), 200, shift=0.01)
    monitor = SequentialMonitor.start(BPB, base_num, den, categories, seed=6, min_samples=10)
    last, decision = run_to_the_end(monitor, cand_num, den, chunk=50)[-1]
    assert last.n == 200
    assert last.low == last.high == pytest.approx(population_delta(cand_num, base_num), abs=1e-12)

    perplexity = METRICS["perplexity"]
    tokens = np.round(den / 4.0) + 1.0
    monitor = SequentialMonitor.start(perplexity, base_num, tokens, categories, seed=6, min_samples=10)
    last, _ = run_to_the_end(monitor, cand_num, tokens, chunk=50)[-1]
    base_ppl, cand_ppl = math.exp(base_num.sum() / tokens.sum()), math.exp(cand_num.sum() / tokens.sum())
    assert last.low == pytest.approx((base_ppl - cand_ppl) / base_ppl, abs=1e-12)


def test_it_decides_red_and_green_early_when_the_difference_is_clear():
    rng = np.random.default_rng(6)
    for shift, expected in ((0.10, "red"), (-0.05, "green")):
        cand_num, den, base_num, categories = golden_set(rng, 1000, shift=shift)
        monitor = SequentialMonitor.start(BPB, base_num, den, categories, seed=7, min_samples=50)
        interval, decision = next(step for step in run_to_the_end(monitor, cand_num, den, 10) if step[1] != "continue")
        assert decision == expected
        assert interval.n < 500
        assert interval.low <= population_delta(cand_num, base_num) <= interval.high


def test_it_decides_similarity_on_its_honest_bound():
    rng = np.random.default_rng(7)
    base = np.clip(rng.normal(0.8, 0.08, 800), -1.0, 1.0)
    cand = np.clip(base * 0.95 + 0.02 * rng.standard_normal(800), -1.0, 1.0)
    categories = np.array(["a", "b"])[rng.integers(0, 2, 800)]
    ones = np.ones(800)
    monitor = SequentialMonitor.start(METRICS["similarity"], base, ones, categories, seed=8, min_samples=50)
    steps = run_to_the_end(monitor, cand, ones, chunk=10)
    first_decision = next(step for step in steps if step[1] != "continue")
    assert first_decision[1] == "red"
    assert first_decision[0].n < 400
    assert steps[-1][0].low == pytest.approx((cand.sum() - base.sum()) / base.sum(), abs=1e-12)


def test_it_never_passes_early_once_a_sample_breaks_the_assumption():
    cand_num, den, base_num, categories = golden_set(np.random.default_rng(8), 400, shift=0.0, noise=0.0)
    monitor = SequentialMonitor.start(BPB, base_num, den, categories, seed=9, min_samples=20)
    assert "green" in [decision for _, decision in run_to_the_end(monitor, cand_num, den, 10)[:-1]]

    broken = cand_num.copy()
    broken[monitor.order[0]] *= 3.0  # one sample's NLL triples: beyond max_change=1
    monitor = SequentialMonitor.start(BPB, base_num, den, categories, seed=9, min_samples=20)
    steps = run_to_the_end(monitor, broken, den, 10)
    assert all(decision == "continue" for _, decision in steps[:-1])
    assert all(interval.low == -math.inf for interval, _ in steps[:-1])


def test_it_refuses_an_order_or_chunk_that_does_not_fit_the_design():
    cand_num, den, base_num, categories = golden_set(np.random.default_rng(9), 120, shift=0.0)
    weights = design_weights(BPB, base_num, den)
    with pytest.raises(ValueError, match="sampling design"):
        SequentialMonitor(BPB, base_num, den, np.arange(120), categories=categories, weights=weights, min_samples=10)
    monitor = SequentialMonitor(
        BPB,
        base_num,
        den,
        sampling_order(categories, seed=1, weights=weights),
        categories=categories,
        weights=weights,
        min_samples=10,
    )
    positions = monitor.order[:5]
    with pytest.raises(ValueError, match="denominators"):
        monitor.update(cand_num[positions], den[positions] + 1.0)
